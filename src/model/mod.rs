//! The model room: every kind of model weft runs, behind one [`Model`].
//!
//! * [`rife`]: a pretrained RIFE-class flow interpolator, the embedded
//!   default. It estimates in-between frames; it cannot generate.
//! * [`transformer`]: weft's own spacetime-patch diffusion transformer, which
//!   refines an estimate (runs only when its config says its weights are
//!   trained, see [`Config::trained`]).
//!
//! A model directory holds `config.json` and `model.safetensors`; the config
//! tells the kinds apart (`"kind": "rife"`, or a weft transformer config).
//! The tasks room asks a model only for what it can do: an estimator for the
//! frames between or beside known ones, and optionally a refiner.

pub mod config;
pub(crate) mod layers;
pub mod ltx;
pub mod rife;
pub mod transformer;
mod weights;

use std::path::Path;

use candle_core::Device;

pub use config::{Config, Prior, WeightDtype};
pub use layers::Mode;
pub use rife::Interpolator;
pub use transformer::{KnownContext, Transformer, WindowBatch};

use crate::error::{Result, WeftError};

/// Parses a device name: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = if name.eq_ignore_ascii_case("cuda") {
        Some(0)
    } else {
        name.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok())
    };
    let Some(ordinal) = ordinal else {
        return Err(WeftError::Device(name.into(), "unknown device, expected cpu, cuda or cuda:N".into()));
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(WeftError::Device(
            name.into(),
            "this build of weft has no CUDA support (rebuild with `--features cuda`)".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| WeftError::Device(name.into(), e.to_string()))
}

/// Human-readable name of a device.
pub fn device_name(dev: &Device) -> String {
    match dev {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
        #[allow(unreachable_patterns)]
        _ => "other".into(),
    }
}


/// A loaded model of any kind.
#[derive(Debug)]
pub struct Model {
    kind: Kind,
}

#[derive(Debug)]
// One per loaded model: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Transformer(Transformer),
    Interpolator(Interpolator),
    /// A pretrained LTX-Video model (diffusers snapshot or single file).
    Ltx(Box<ltx::LtxVideo>),
}

impl From<ltx::LtxVideo> for Model {
    fn from(m: ltx::LtxVideo) -> Self {
        Model { kind: Kind::Ltx(Box::new(m)) }
    }
}

impl From<Transformer> for Model {
    fn from(t: Transformer) -> Self {
        Model { kind: Kind::Transformer(t) }
    }
}

impl From<Interpolator> for Model {
    fn from(i: Interpolator) -> Self {
        Model { kind: Kind::Interpolator(i) }
    }
}

impl Model {
    /// A randomly initialised weft transformer (see [`Transformer::untrained`]).
    pub fn untrained(cfg: &Config, seed: u64, device: &Device) -> Result<Self> {
        Ok(Transformer::untrained(cfg, seed, device)?.into())
    }

    /// Loads a model directory (`config.json` + `model.safetensors`) of any
    /// kind onto the CPU, validating every tensor.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Like [`Model::load`], onto `device`. An LTX-Video diffusers snapshot
    /// (a directory with `model_index.json`) or single-file checkpoint (a
    /// `.safetensors` file) loads as [`ltx::LtxVideo`] in f32, with the
    /// snapshot's text encoder if it has one (see [`Model::load_ltx`]).
    pub fn load_on(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = dir.as_ref();
        if ltx::load::is_ltx_path(path) {
            return Self::load_ltx(path, None, candle_core::DType::F32, device);
        }
        weights::load_dir(path, device)
    }

    /// An LTX-Video snapshot directory or single file, the transformer in
    /// `dtype`, with the T5 text encoder from `text_encoder` (a folder with
    /// `text_encoder/` + `tokenizer/`, or a T5 folder; `None`: the snapshot's own).
    pub fn load_ltx(
        path: impl AsRef<Path>,
        text_encoder: Option<&Path>,
        dtype: candle_core::DType,
        device: &Device,
    ) -> Result<Self> {
        Ok(ltx::LtxVideo::load(path, text_encoder, dtype, device)?.into())
    }

    /// The default model compiled into the library (`models/default/`: the
    /// RIFE 4.25 interpolator, see its README), on the CPU. Fails with
    /// [`WeftError::NoEmbeddedModel`] in a build made without one.
    pub fn embedded() -> Result<Self> {
        #[cfg(weft_default_model)]
        {
            const CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/config.json"));
            const WEIGHTS: &[u8] =
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/model.safetensors"));
            weights::load_parts(CONFIG, WEIGHTS, Path::new("<embedded>"), &Device::Cpu)
        }
        #[cfg(not(weft_default_model))]
        Err(WeftError::NoEmbeddedModel)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if
    /// needed; files are written under temporary names and renamed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        match &self.kind {
            Kind::Transformer(t) => t.save(dir),
            Kind::Interpolator(i) => weights::save_interpolator(i, dir.as_ref()),
            Kind::Ltx(m) => Err(WeftError::ModelDir {
                path: m.source.clone(),
                reason: "LTX-Video models are read from their snapshot or checkpoint; weft does not write them".into(),
            }),
        }
    }

    /// A copy of this model on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(match &self.kind {
            Kind::Transformer(t) => t.to_device(device)?.into(),
            Kind::Interpolator(i) => i.to_device(device)?.into(),
            Kind::Ltx(m) => m.reload_on(device)?.into(),
        })
    }

    pub fn device(&self) -> &Device {
        match &self.kind {
            Kind::Transformer(t) => t.device(),
            Kind::Interpolator(i) => i.device(),
            Kind::Ltx(m) => m.device(),
        }
    }

    /// The weft transformer, for a model of that kind.
    pub fn transformer(&self) -> Option<&Transformer> {
        match &self.kind {
            Kind::Transformer(t) => Some(t),
            Kind::Interpolator(_) | Kind::Ltx(_) => None,
        }
    }

    /// The weft transformer itself, for a model of that kind.
    pub fn into_transformer(self) -> Option<Transformer> {
        match self.kind {
            Kind::Transformer(t) => Some(t),
            Kind::Interpolator(_) | Kind::Ltx(_) => None,
        }
    }

    /// The flow interpolator, for a model of that kind.
    pub fn interpolator(&self) -> Option<&Interpolator> {
        match &self.kind {
            Kind::Interpolator(i) => Some(i),
            Kind::Transformer(_) | Kind::Ltx(_) => None,
        }
    }

    /// The LTX-Video model, for a model of that kind.
    pub fn ltx(&self) -> Option<&ltx::LtxVideo> {
        match &self.kind {
            Kind::Ltx(m) => Some(m),
            _ => None,
        }
    }

    /// The LTX-Video model, mutably (text encoding loads the encoder on first use).
    pub fn ltx_mut(&mut self) -> Option<&mut ltx::LtxVideo> {
        match &mut self.kind {
            Kind::Ltx(m) => Some(m),
            _ => None,
        }
    }

    /// The transformer that refines the estimates, when this model has one
    /// whose weights are trained; `None` means the estimate is the output.
    pub fn refiner(&self) -> Option<&Transformer> {
        self.transformer().filter(|t| t.config().trained)
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        match &self.kind {
            Kind::Transformer(t) => t.num_parameters(),
            Kind::Interpolator(i) => i.num_parameters(),
            Kind::Ltx(m) => m.num_parameters(),
        }
    }

    /// One line naming the kind of model and what it runs.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Transformer(t) => {
                let c = t.config();
                format!(
                    "weft transformer, {} parameters ({}), {} prior, {}",
                    self.num_parameters(),
                    c.weight_dtype.name(),
                    c.prior.name(),
                    if c.trained { "trained: refines the estimate" } else { "untrained: the estimate alone is used" }
                )
            }
            Kind::Interpolator(i) => format!(
                "RIFE {} flow interpolator, {} parameters ({})",
                i.config().version,
                self.num_parameters(),
                i.config().weight_dtype.name()
            ),
            Kind::Ltx(m) => m.describe(),
        }
    }
}
