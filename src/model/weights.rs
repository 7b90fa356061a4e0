//! Saving and loading: `config.json` + `model.safetensors`, validated tensor by
//! tensor. A CRC-32 of the tensor data is kept in the safetensors metadata so
//! that corruption inside the data (not only a broken header) is detected.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_core::safetensors::Load;
use safetensors::SafeTensors;

use super::{Config, Interpolator, Model, Transformer, WeightDtype, rife};
use crate::error::{Result, WeftError};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const CHECKSUM_KEY: &str = "weft.crc32";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WeftError + '_ {
    move |source| WeftError::Io { path: path.to_path_buf(), source }
}

fn dtype_name(d: safetensors::Dtype) -> String {
    format!("{d:?}").to_lowercase()
}

/// CRC-32 over the data of every tensor, in name order.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, data) in sorted {
        h.update(name.as_bytes());
        h.update(data);
    }
    format!("{:08x}", h.finalize())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: format!("cannot read: {e}") })
}

/// A weft transformer config.
pub(super) fn parse_config(text: &str, path: &Path) -> Result<Config> {
    let cfg: Config = serde_json::from_str(text).map_err(|e| WeftError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    cfg.validate().map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(cfg)
}

pub(super) fn load_dir(dir: &Path, device: &Device) -> Result<Model> {
    if !dir.is_dir() {
        return Err(WeftError::ModelDir {
            path: dir.to_path_buf(),
            reason: if dir.exists() { "is not a directory".into() } else { "does not exist".into() },
        });
    }
    let text = read_text(&dir.join(CONFIG_FILE))?;
    // The config first: a broken config is reported as such, before the weights are read.
    let cfg = parse_any(&text, &dir.join(CONFIG_FILE))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| WeftError::WeightsCorrupt {
        path: wpath.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    build(cfg, &bytes, &wpath, device)
}

/// A parsed and validated config of either kind.
enum AnyConfig {
    Transformer(Config),
    Rife(rife::Config),
}

/// Parses a config by its `kind` field (none for a weft transformer config).
fn parse_any(text: &str, path: &Path) -> Result<AnyConfig> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
    match value.get("kind") {
        None => Ok(AnyConfig::Transformer(parse_config(text, path)?)),
        Some(serde_json::Value::String(k)) if k == rife::KIND => Ok(AnyConfig::Rife(rife::read_config(text, path)?)),
        Some(other) => Err(WeftError::Config {
            path: path.to_path_buf(),
            reason: format!("unknown model kind {other} (this weft knows `{}` and weft transformer configs)", rife::KIND),
        }),
    }
}

fn build(cfg: AnyConfig, weights: &[u8], wpath: &Path, device: &Device) -> Result<Model> {
    Ok(match cfg {
        AnyConfig::Transformer(cfg) => load_bytes(&cfg, weights, wpath, device)?.into(),
        AnyConfig::Rife(cfg) => {
            let tensors = checked_tensors(weights, wpath, &cfg.tensor_shapes(), cfg.weight_dtype, device)?;
            Interpolator::from_tensors(&cfg, tensors, device)?.into()
        }
    })
}

/// A model from the text of its config and the bytes of its weights
/// (`dir` names them in errors).
pub(super) fn load_parts(config: &str, weights: &[u8], dir: &Path, device: &Device) -> Result<Model> {
    build(parse_any(config, &dir.join(CONFIG_FILE))?, weights, &dir.join(WEIGHTS_FILE), device)
}

/// A weft transformer from its config and safetensors bytes.
pub(super) fn load_bytes(cfg: &Config, bytes: &[u8], path: &Path, device: &Device) -> Result<Transformer> {
    // The file is checked against the config's shapes before the model is
    // built: a damaged config (a huge width or depth) is an error, not an
    // allocation of whatever it asks for.
    let expected = Transformer::tensor_shapes(cfg)?;
    let tensors = checked_tensors(bytes, path, &expected, cfg.weight_dtype, device)?;
    let model = Transformer::build(cfg, device)?;
    for (name, var) in model.named_vars() {
        var.set(&tensors[&name])?;
    }
    Ok(model)
}

/// Checks a safetensors file against the tensors a model needs (every name
/// present and none unknown, shapes, storage dtype, the recorded checksum,
/// finite values) and loads them as f32 on `device`.
pub(super) fn checked_tensors(
    bytes: &[u8],
    path: &Path,
    expected: &[(String, Vec<usize>)],
    dtype: WeightDtype,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let corrupt = |reason: String| WeftError::WeightsCorrupt { path: path.to_path_buf(), reason };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;
    let want_dtype = dtype.candle();

    // Names first: every expected tensor present, nothing unknown.
    let names: std::collections::BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    for (name, _) in expected {
        if !names.contains(name) {
            return Err(WeftError::MissingTensor { name: name.clone() });
        }
    }
    let expected_names: std::collections::BTreeSet<&String> = expected.iter().map(|(n, _)| n).collect();
    if let Some(extra) = names.iter().find(|n| !expected_names.contains(n)) {
        return Err(WeftError::UnexpectedTensor { name: extra.clone() });
    }

    // Then shape and dtype of each.
    for (name, dims) in expected {
        let view = st.tensor(name).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        if view.shape() != dims.as_slice() {
            return Err(WeftError::ShapeMismatch {
                name: name.clone(),
                expected: dims.clone(),
                found: view.shape().to_vec(),
            });
        }
        let found: DType = view
            .dtype()
            .try_into()
            .map_err(|_| WeftError::DtypeMismatch {
                name: name.clone(),
                expected: dtype.name().into(),
                found: dtype_name(view.dtype()),
            })?;
        if found != want_dtype {
            return Err(WeftError::DtypeMismatch {
                name: name.clone(),
                expected: dtype.name().into(),
                found: dtype_name(view.dtype()),
            });
        }
    }

    // Data integrity, when the writer recorded a checksum.
    if let Some(want) = meta.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY)) {
        let views = st.tensors();
        let got = checksum(views.iter().map(|(n, v)| (n.as_str(), v.data())));
        if &got != want {
            return Err(corrupt(format!("checksum mismatch (file says {want}, data gives {got}): the file is damaged")));
        }
    }

    let mut out = HashMap::with_capacity(expected.len());
    for (name, _) in expected {
        let view = st.tensor(name).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        let t = view.load(device)?.to_dtype(DType::F32)?;
        let finite = t.abs()?.max_all()?.to_scalar::<f32>()?.is_finite();
        if !finite {
            return Err(WeftError::NonFinite { name: name.clone() });
        }
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// Writes `bytes` to `path` via a temporary file in the same directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = crate::interrupt::TempPath::new(path.with_extension(format!("tmp{}", std::process::id())));
    std::fs::write(tmp.path(), bytes).map_err(io(tmp.path()))?;
    tmp.commit(|t| std::fs::rename(t, path).map_err(|e| WeftError::Io { path: path.to_path_buf(), source: e }))
}

/// Serialises named tensors in the storage dtype to safetensors bytes, with
/// a checksum of their data.
pub(super) fn to_bytes<'a>(named: impl IntoIterator<Item = (String, &'a Tensor)>, dtype: WeightDtype) -> Result<Vec<u8>> {
    let dtype = dtype.candle();
    let tensors: BTreeMap<String, Tensor> = named
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?.to_dtype(dtype)?)))
        .collect::<Result<_>>()?;
    let raw: Vec<(String, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), safetensors::View::data(t).into_owned())))
        .collect::<Result<_>>()?;
    let sum = checksum(raw.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    // One key only: safetensors writes the metadata map in hash order, and the
    // file must be byte-identical for the same weights.
    let meta: HashMap<String, String> = [(CHECKSUM_KEY.to_string(), sum)].into();
    safetensors::serialize(tensors.iter(), Some(meta))
        .map_err(|e| WeftError::BadOptions(format!("cannot serialise weights: {e}")))
}

fn write_model(dir: &Path, config: String, weights: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_atomic(&dir.join(WEIGHTS_FILE), weights)?;
    write_atomic(&dir.join(CONFIG_FILE), format!("{config}\n").as_bytes())
}

pub(super) fn save_dir(model: &Transformer, dir: &Path) -> Result<()> {
    let vars = model.named_vars();
    let bytes = to_bytes(vars.iter().map(|(n, v)| (n.clone(), v.as_tensor())), model.config().weight_dtype)?;
    write_model(dir, serde_json::to_string_pretty(model.config()).expect("config serialises"), &bytes)
}

pub(super) fn save_interpolator(model: &Interpolator, dir: &Path) -> Result<()> {
    let cfg = model.config();
    let bytes = to_bytes(model.tensors().iter().map(|(n, t)| (n.clone(), t)), cfg.weight_dtype)?;
    write_model(dir, serde_json::to_string_pretty(cfg).expect("config serialises"), &bytes)
}
