//! Model properties: the settings every weft element shares, and the model they load.

use std::sync::Arc;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use super::*;

pub const DEFAULT_STEPS: u32 = weft::tasks::DEFAULT_STEPS as u32;
pub const DEFAULT_SEED: u64 = 0;
pub const DEFAULT_DEVICE: &str = "cpu";

/// The properties every element has: which model, where, how many steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    pub model_path: String,
    pub steps: u32,
    pub seed: u64,
    pub device: String,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self { model_path: String::new(), steps: DEFAULT_STEPS, seed: DEFAULT_SEED, device: DEFAULT_DEVICE.into() }
    }
}

pub fn model_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model-path")
            .nick("Model path")
            .blurb(
                "Directory holding config.json and model.safetensors of a weft model; \
                 empty uses the model embedded in the library",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("steps")
            .nick("Steps")
            .blurb("Sampler steps per generated window (more is slower and finer)")
            .minimum(1)
            .maximum(1000)
            .default_value(DEFAULT_STEPS)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt64::builder("seed")
            .nick("Seed")
            .blurb("Seed of the sampling noise: the same seed and input give the same frames")
            .default_value(DEFAULT_SEED)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("device")
            .nick("Device")
            .blurb("Where the model runs: cpu, cuda or cuda:N (CUDA needs a weft built with CUDA)")
            .default_value(Some(DEFAULT_DEVICE))
            .mutable_ready()
            .build(),
    ]
}

/// Sets one of the [`model_properties`]; false when `name` is not one.
pub fn set_model_property(s: &mut ModelSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "model-path" => s.model_path = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
        "steps" => s.steps = value.get().expect("type checked"),
        "seed" => s.seed = value.get().expect("type checked"),
        "device" => {
            s.device = value
                .get::<Option<String>>()
                .expect("type checked")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_DEVICE.into())
        }
        _ => return false,
    }
    true
}

pub fn model_property(s: &ModelSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "model-path" => s.model_path.to_value(),
        "steps" => s.steps.to_value(),
        "seed" => s.seed.to_value(),
        "device" => s.device.to_value(),
        _ => return None,
    })
}

/// The `frames` property of the elements that generate a set number of
/// frames: at least `minimum`, default `default`; overridden by `duration`.
pub fn frames_property(blurb: &str, minimum: u32, default: u32) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder("frames")
        .nick("Frames")
        .blurb(blurb)
        .minimum(minimum)
        .maximum(100_000)
        .default_value(default)
        .mutable_ready()
        .build()
}

/// The `duration` property that overrides `frames`: nanoseconds, with
/// GST_CLOCK_TIME_NONE (the default) for unset.
pub fn duration_property(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecUInt64::builder("duration")
        .nick("Duration")
        .blurb(blurb)
        .minimum(0)
        .maximum(u64::MAX)
        .default_value(u64::MAX)
        .mutable_ready()
        .build()
}

/// The value of a [`duration_property`]: `None` when unset.
pub fn duration_from_value(value: &glib::Value) -> Option<gst::ClockTime> {
    let ns: u64 = value.get().expect("type checked");
    (ns != u64::MAX).then(|| gst::ClockTime::from_nseconds(ns))
}

/// `duration` as the value of a [`duration_property`].
pub fn duration_to_value(duration: Option<gst::ClockTime>) -> glib::Value {
    duration.map_or(u64::MAX, |d| d.nseconds()).to_value()
}

/// The model of an element: checked when the element starts (device, model
/// directory, or the embedded model), its weights loaded on first use, on the
/// src task, so a stream that never needs a frame generated never pays for it.
pub struct LazyModel {
    path: String,
    device: candle_core::Device,
    model: std::sync::OnceLock<Result<Arc<weft::Model>, String>>,
}

impl LazyModel {
    /// The model, loading it on the first call.
    pub fn get(&self, element: &gst::Element) -> Result<Arc<weft::Model>, String> {
        self.model
            .get_or_init(|| {
                let t0 = Instant::now();
                let m = weft::Model::load_on(&self.path, &self.device)
                    .map_err(|e| format!("could not load the weft model from model-path {}: {e}", self.path))?;
                gst::info!(
                    CAT,
                    obj = element,
                    "loaded model {} ({} parameters) in {:.3} s",
                    self.path,
                    m.num_parameters(),
                    t0.elapsed().as_secs_f64()
                );
                Ok(Arc::new(m))
            })
            .clone()
    }
}

/// An element's model and the settings it was made for.
pub struct Engine {
    pub key: (String, String),
    pub model: Arc<LazyModel>,
}

/// Checks the model settings when an element starts (READY to PAUSED), reusing
/// `cached` when they did not change. On failure posts an ERROR message naming
/// the problem: an unknown device, no embedded model, a model-path that is not
/// a model directory.
pub fn load_engine(
    element: &gst::Element,
    s: &ModelSettings,
    cached: Option<&Engine>,
) -> Result<Engine, gst::StateChangeError> {
    let key = (s.model_path.clone(), s.device.clone());
    if let Some(e) = cached.filter(|e| e.key == key) {
        return Ok(Engine { key, model: e.model.clone() });
    }
    let device = match weft::model::parse_device(&s.device) {
        Ok(d) => d,
        Err(e) => {
            gst::element_error!(element, gst::LibraryError::Settings, ("Bad device property: {}", e));
            return Err(gst::StateChangeError);
        }
    };
    let lazy = LazyModel { path: s.model_path.clone(), device: device.clone(), model: std::sync::OnceLock::new() };
    if s.model_path.is_empty() {
        let embedded = weft::Model::embedded()
            .and_then(|m| if device.same_device(m.device()) { Ok(m) } else { m.to_device(&device) });
        match embedded {
            Ok(m) => {
                let _ = lazy.model.set(Ok(Arc::new(m)));
            }
            Err(e) => {
                gst::element_error!(
                    element,
                    gst::ResourceError::NotFound,
                    ("Could not load the weft model: model-path is empty and {}", e),
                    ["set model-path to a model directory (config.json + model.safetensors)"]
                );
                return Err(gst::StateChangeError);
            }
        }
    } else {
        let dir = std::path::Path::new(&s.model_path);
        let problem = if !dir.is_dir() {
            Some("no such directory".to_string())
        } else {
            ["config.json", "model.safetensors"]
                .iter()
                .find(|f| !dir.join(f).is_file())
                .map(|f| format!("{f} is missing (a weft model directory holds config.json and model.safetensors)"))
        };
        if let Some(problem) = problem {
            gst::element_error!(
                element,
                gst::ResourceError::NotFound,
                ("Could not load the weft model from model-path {}: {}", s.model_path, problem)
            );
            return Err(gst::StateChangeError);
        }
    }
    Ok(Engine { key, model: Arc::new(lazy) })
}

pub fn generate_options(s: &ModelSettings) -> weft::GenerateOptions {
    weft::GenerateOptions {
        steps: s.steps as usize,
        seed: s.seed,
        device: None,
        window: None,
        context: CONTEXT,
        ..Default::default()
    }
}

