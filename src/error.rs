//! The errors weft returns. Every variant names the thing that is wrong, so a
//! message printed by the CLI or posted on a GStreamer bus is enough to act on.

use std::path::PathBuf;

/// Errors from loading models, checking inputs and generating frames.
#[derive(Debug, thiserror::Error)]
pub enum WeftError {
    #[error("model directory {path}: {reason}")]
    ModelDir { path: PathBuf, reason: String },

    #[error("model config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("invalid model config: {0}")]
    InvalidConfig(String),

    #[error("model weights {path}: {reason}")]
    WeightsCorrupt { path: PathBuf, reason: String },

    #[error("model weights: tensor `{name}` is missing")]
    MissingTensor { name: String },

    #[error("model weights: unexpected tensor `{name}` (not part of this config)")]
    UnexpectedTensor { name: String },

    #[error("model weights: tensor `{name}` has shape {found:?}, the config needs {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("model weights: tensor `{name}` is stored as {found}, the config says {expected}")]
    DtypeMismatch { name: String, expected: String, found: String },

    #[error("model weights: tensor `{name}` holds NaN or infinite values")]
    NonFinite { name: String },

    #[error(
        "no embedded model in this build of weft (models/default/ was empty when it was built); \
         pass a model directory (Model::load / --model DIR / model-path)"
    )]
    NoEmbeddedModel,

    #[error("device `{0}`: {1}")]
    Device(String, String),

    #[error("bad frame: {0}")]
    BadFrame(String),

    #[error("bad plan: {0}")]
    BadPlan(String),

    #[error("bad options: {0}")]
    BadOptions(String),

    #[error("conditioning frame codec: {0}")]
    Codec(String),

    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = WeftError> = std::result::Result<T, E>;
