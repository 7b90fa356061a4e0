//! The model of an element: checked when the element starts, shared by the
//! elements of the process with the same model settings, its weights loaded
//! on first use, and the context frames it conditions on.

use std::sync::Arc;
use std::time::Instant;

use weft::tasks::{ContextFrames, ContextModel, context_frames};

use super::*;

/// The model of an element: checked when the element starts (device, model
/// directory or LTX-Video checkpoint, or the embedded model), its weights
/// loaded on first use, on the src task, so a stream that never needs a frame
/// generated never pays for it.
pub struct LazyModel {
    path: String,
    /// LTX-Video: the text encoder folder (`None`: the snapshot's own).
    ltx: Option<Option<std::path::PathBuf>>,
    device: candle_core::Device,
    /// What its context frames depend on (an LTX-Video checkpoint's configs
    /// say it before the weights load).
    context_model: ContextModel,
    model: std::sync::OnceLock<Result<Arc<weft::Model>, String>>,
}

impl LazyModel {
    /// The model, loading it on the first call.
    pub fn get(&self, element: &gst::Element) -> Result<Arc<weft::Model>, String> {
        self.model
            .get_or_init(|| {
                let t0 = Instant::now();
                let m = match &self.ltx {
                    Some(te) => weft::Model::load_ltx(&self.path, te.as_deref(), candle_core::DType::F32, &self.device)
                        .map_err(|e| format!("could not load the LTX-Video model from model-path {}: {e}", self.path))?,
                    None => weft::Model::load_on(&self.path, &self.device)
                        .map_err(|e| format!("could not load the weft model from model-path {}: {e}", self.path))?,
                };
                gst::info!(
                    CAT,
                    obj = element,
                    "loaded model {} ({}) in {:.3} s",
                    self.path,
                    m.describe(),
                    t0.elapsed().as_secs_f64()
                );
                Ok(Arc::new(m))
            })
            .clone()
    }
}

/// An element's model, the settings it was made for, and the real frames
/// it conditions on with the element's settings.
pub struct Engine {
    pub key: ModelKey,
    pub model: Arc<LazyModel>,
    pub context: ContextFrames,
}

impl Engine {
    fn new(key: ModelKey, model: Arc<LazyModel>, s: &ModelSettings) -> Self {
        let context = context_frames(model.context_model, &generate_options(s));
        Engine { key, model, context }
    }
}

/// Checks the model settings when an element starts (READY to PAUSED), reusing
/// `cached` when they did not change. On failure posts an ERROR message naming
/// the problem: an unknown device, no embedded model, a model-path that is not
/// a model directory or LTX-Video checkpoint, an LTX-Video property with
/// another model or out of its range, a missing text encoder.
pub fn load_engine(
    element: &gst::Element,
    s: &ModelSettings,
    cached: Option<&Engine>,
) -> Result<Engine, gst::StateChangeError> {
    let ltx = s.is_ltx();
    if !ltx && let Some(name) = s.ltx_given().first() {
        let which = if s.model_path.is_empty() {
            "the embedded interpolator".to_string()
        } else {
            format!("the weft model at {}", s.model_path)
        };
        let cannot = match *name {
            "prompt" | "negative-prompt" => "cannot follow a prompt",
            "guidance" => "has no prompt to guide by",
            "gen-size" => "works at the stream's own size",
            "ltx-preset" => "has no sampling recipe",
            "condition-blur" | "condition-crf" => "takes its conditioning frames as they are",
            _ => "has no use for a text encoder",
        };
        gst::element_error!(
            element,
            gst::LibraryError::Settings,
            ("The {} property needs a generative model (LTX-Video); {} {}", name, which, cannot),
            ["set model-path to an LTX-Video snapshot or checkpoint, or leave {} unset", name]
        );
        return Err(gst::StateChangeError);
    }
    if ltx && let Err(e) = s.ltx_settings() {
        gst::element_error!(element, gst::LibraryError::Settings, ("{}", e));
        return Err(gst::StateChangeError);
    }
    let key = (s.model_path.clone(), s.device.clone(), s.text_encoder.clone());
    if let Some(e) = cached.filter(|e| e.key == key) {
        return Ok(Engine::new(key, e.model.clone(), s));
    }
    // Elements of the process with the same model settings share one model
    // (held while any of them holds it). The lock is kept while a new one is
    // checked, so elements starting together still load it once.
    let mut shared = SHARED_MODELS.lock().unwrap_or_else(|e| e.into_inner());
    shared.retain(|_, m| m.strong_count() > 0);
    if let Some(model) = shared.get(&key).and_then(std::sync::Weak::upgrade) {
        gst::debug!(CAT, obj = element, "sharing the model of another element ({})", s.model_path);
        return Ok(Engine::new(key, model, s));
    }
    let engine = new_engine(element, s, key)?;
    shared.insert(engine.key.clone(), Arc::downgrade(&engine.model));
    Ok(engine)
}

type ModelKey = (String, String, String);

/// The models elements hold, by (model path, device, text encoder).
static SHARED_MODELS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<ModelKey, std::sync::Weak<LazyModel>>>> =
    std::sync::LazyLock::new(Default::default);

/// How many distinct models the elements of this process hold now (several
/// elements with the same model settings share one).
pub fn models_in_use() -> usize {
    SHARED_MODELS.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|m| m.strong_count() > 0).count()
}

/// A new engine for `s` (see [`load_engine`]).
fn new_engine(element: &gst::Element, s: &ModelSettings, key: ModelKey) -> Result<Engine, gst::StateChangeError> {
    let ltx = s.is_ltx();
    let device = match weft::model::parse_device(&s.device) {
        Ok(d) => d,
        Err(e) => {
            gst::element_error!(element, gst::LibraryError::Settings, ("Bad device property: {}", e));
            return Err(gst::StateChangeError);
        }
    };
    let text_encoder = (!s.text_encoder.is_empty()).then(|| std::path::PathBuf::from(&s.text_encoder));
    let mut lazy = LazyModel {
        path: s.model_path.clone(),
        ltx: None,
        device: device.clone(),
        context_model: ContextModel::Weft,
        model: std::sync::OnceLock::new(),
    };
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
    } else if ltx {
        // Configs and headers only (fast on any size): the weights load on first use.
        let path = std::path::Path::new(&s.model_path);
        let problem = match &text_encoder {
            Some(te) if !te.is_dir() => Some(format!("text-encoder {}: no such directory", te.display())),
            _ => match weft::model::ltx::load::inspect(path, text_encoder.as_deref()) {
                Err(e) => Some(e.to_string()),
                Ok(i) => {
                    lazy.context_model = ContextModel::from(&i);
                    match i.text {
                        weft::model::ltx::load::TextStatus::Missing(why) => Some(format!(
                            "no T5 text encoder, which LTX-Video needs even with an empty prompt: {}",
                            why.replace("--text-encoder DIR", "the text-encoder property")
                        )),
                        _ => None,
                    }
                }
            },
        };
        if let Some(problem) = problem {
            gst::element_error!(
                element,
                gst::ResourceError::NotFound,
                ("Could not load the LTX-Video model from model-path {}: {}", s.model_path, problem)
            );
            return Err(gst::StateChangeError);
        }
        lazy.ltx = Some(text_encoder);
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
    Ok(Engine::new(key, Arc::new(lazy), s))
}
