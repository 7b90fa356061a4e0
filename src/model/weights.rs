//! Saving and loading: `config.json` + `model.safetensors`, validated tensor by
//! tensor. A CRC-32 of the tensor data is kept in the safetensors metadata so
//! that corruption inside the data (not only a broken header) is detected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_core::safetensors::Load;
use safetensors::SafeTensors;

use super::{Config, Model};
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

pub(super) fn read_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| WeftError::Config {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    let cfg: Config = serde_json::from_str(&text).map_err(|e| WeftError::Config {
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
    let cfg = read_config(&dir.join(CONFIG_FILE))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| WeftError::WeightsCorrupt {
        path: wpath.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    load_bytes(&cfg, &bytes, &wpath, device)
}

pub(super) fn load_bytes(cfg: &Config, bytes: &[u8], path: &Path, device: &Device) -> Result<Model> {
    let corrupt = |reason: String| WeftError::WeightsCorrupt { path: path.to_path_buf(), reason };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;

    let model = Model::build(cfg, device)?;
    let expected = model.named_vars();
    let want_dtype = cfg.weight_dtype.candle();

    // Names first: every expected tensor present, nothing unknown.
    let names: std::collections::BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    for (name, _) in &expected {
        if !names.contains(name) {
            return Err(WeftError::MissingTensor { name: name.clone() });
        }
    }
    let expected_names: std::collections::BTreeSet<&String> = expected.iter().map(|(n, _)| n).collect();
    if let Some(extra) = names.iter().find(|n| !expected_names.contains(n)) {
        return Err(WeftError::UnexpectedTensor { name: extra.clone() });
    }

    // Then shape and dtype of each.
    for (name, var) in &expected {
        let view = st.tensor(name).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        if view.shape() != var.dims() {
            return Err(WeftError::ShapeMismatch {
                name: name.clone(),
                expected: var.dims().to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let found: DType = view
            .dtype()
            .try_into()
            .map_err(|_| WeftError::DtypeMismatch {
                name: name.clone(),
                expected: cfg.weight_dtype.name().into(),
                found: dtype_name(view.dtype()),
            })?;
        if found != want_dtype {
            return Err(WeftError::DtypeMismatch {
                name: name.clone(),
                expected: cfg.weight_dtype.name().into(),
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

    for (name, var) in &expected {
        let view = st.tensor(name).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        let t = view.load(device)?.to_dtype(DType::F32)?;
        let finite = t.abs()?.max_all()?.to_scalar::<f32>()?.is_finite();
        if !finite {
            return Err(WeftError::NonFinite { name: name.clone() });
        }
        var.set(&t)?;
    }
    Ok(model)
}

/// Writes `bytes` to `path` via a temporary file in the same directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        WeftError::Io { path: path.to_path_buf(), source: e }
    })
}

/// Serialises the weights (in the config's storage dtype) to safetensors bytes.
pub(super) fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    let dtype = model.config().weight_dtype.candle();
    let tensors: BTreeMap<String, Tensor> = model
        .named_vars()
        .into_iter()
        .map(|(n, v)| Ok((n, v.as_tensor().to_device(&Device::Cpu)?.to_dtype(dtype)?)))
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

pub(super) fn save_dir(model: &Model, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cfg = serde_json::to_string_pretty(model.config()).expect("config serialises");
    write_atomic(&dir.join(WEIGHTS_FILE), &to_bytes(model)?)?;
    write_atomic(&dir.join(CONFIG_FILE), format!("{cfg}\n").as_bytes())
}
