//! Model properties: the settings every weft element shares, and the
//! generation options they make.

use gst::glib;
use gst::prelude::*;
use weft::model::ltx::generate::{LtxPreset, LtxSettings};

use super::*;

/// `steps` left at 0: the model's own default ([`weft::tasks::DEFAULT_STEPS`]
/// for weft models, the sampling recipe's for LTX-Video).
pub const DEFAULT_STEPS: u32 = 0;
pub const DEFAULT_SEED: u64 = 0;
pub const DEFAULT_DEVICE: &str = "cpu";
/// `guidance` left at 0: the sampling recipe's (3.0 dev, 1.0 distilled).
pub const DEFAULT_GUIDANCE: f64 = 0.0;
pub const DEFAULT_GEN_SIZE: u32 = 512;

/// The properties every element has: which model, where, how many steps,
/// and how a generative LTX-Video model runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    pub model_path: String,
    pub steps: u32,
    pub seed: u64,
    pub device: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub guidance: f64,
    pub gen_size: u32,
    pub text_encoder: String,
    /// `dev`, `distilled`, or empty: told from the checkpoint.
    pub ltx_preset: String,
    /// Blur sigma of the conditioning frames (0: none).
    pub condition_blur: f64,
    /// libx264 CRF of the conditioning frames' round trip (0: none).
    pub condition_crf: u32,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            model_path: String::new(),
            steps: DEFAULT_STEPS,
            seed: DEFAULT_SEED,
            device: DEFAULT_DEVICE.into(),
            prompt: String::new(),
            negative_prompt: String::new(),
            guidance: DEFAULT_GUIDANCE,
            gen_size: DEFAULT_GEN_SIZE,
            text_encoder: String::new(),
            ltx_preset: String::new(),
            condition_blur: 0.0,
            condition_crf: 0,
        }
    }
}

impl ModelSettings {
    /// `model-path` names an LTX-Video snapshot directory or single file.
    pub fn is_ltx(&self) -> bool {
        !self.model_path.is_empty() && weft::model::ltx::load::is_ltx_path(std::path::Path::new(&self.model_path))
    }

    /// The LTX-Video properties set away from their defaults, by name.
    pub(crate) fn ltx_given(&self) -> Vec<&'static str> {
        let d = Self::default();
        [
            ("prompt", self.prompt != d.prompt),
            ("negative-prompt", self.negative_prompt != d.negative_prompt),
            ("guidance", self.guidance != d.guidance),
            ("gen-size", self.gen_size != d.gen_size),
            ("text-encoder", self.text_encoder != d.text_encoder),
            ("ltx-preset", self.ltx_preset != d.ltx_preset),
            ("condition-blur", self.condition_blur != d.condition_blur),
            ("condition-crf", self.condition_crf != d.condition_crf),
        ]
        .into_iter()
        .filter(|p| p.1)
        .map(|p| p.0)
        .collect()
    }

    /// The LTX-Video settings of these properties, each property checked on
    /// its own (the error names it), then together. `guidance` 0 and
    /// `steps` 0 take the checkpoint's defaults.
    pub fn ltx_settings(&self) -> Result<LtxSettings, String> {
        let preset = match self.ltx_preset.trim() {
            "" => weft::model::ltx::load::detect_preset(std::path::Path::new(&self.model_path)),
            p => LtxPreset::parse(p)
                .ok_or_else(|| format!("Bad ltx-preset property: {p:?} is not dev, distilled or empty"))?,
        };
        let base = preset.settings();
        let mut s = base.clone();
        let crf_range = 1..=weft::model::ltx::condition::MAX_CRF;
        if crf_range.contains(&self.condition_crf) && conditioning_codec().is_none() {
            return Err("Bad condition-crf property: the libx264 round trip needs FFmpeg, and this gst-plugin-weft was \
                        built without it (cargo feature ffmpeg); set condition-crf 0"
                .to_string());
        }
        let apply: [(&str, Setter); 7] = [
            ("prompt", &|s| s.prompt = self.prompt.clone()),
            ("negative-prompt", &|s| {
                s.negative_prompt = Some(self.negative_prompt.clone()).filter(|n| !n.is_empty())
            }),
            ("guidance", &|s| {
                if self.guidance != DEFAULT_GUIDANCE {
                    s.guidance = self.guidance
                }
            }),
            ("gen-size", &|s| s.gen_size = self.gen_size as usize),
            ("steps", &|s| {
                if self.steps != DEFAULT_STEPS {
                    s.steps = self.steps as usize;
                    s.timesteps = None;
                }
            }),
            ("condition-blur", &|s| s.condition_blur = self.condition_blur),
            ("condition-crf", &|s| {
                s.condition_crf = self.condition_crf;
                s.condition_codec = conditioning_codec();
            }),
        ];
        let msg = |e: weft::WeftError| match e {
            weft::WeftError::BadOptions(m) => m,
            e => e.to_string(),
        };
        for (name, f) in apply {
            let mut one = base.clone();
            f(&mut one);
            one.check().map_err(|e| format!("Bad {name} property: {}", msg(e)))?;
            f(&mut s);
        }
        s.check().map_err(|e| format!("Bad LTX-Video properties: {}", msg(e)))?;
        Ok(s)
    }
}

/// Sets one property on the settings.
type Setter<'a> = &'a dyn Fn(&mut LtxSettings);

/// The codec of `condition-crf`: weft's libx264 round trip, in a plugin
/// built with the `ffmpeg` feature.
#[cfg(feature = "ffmpeg")]
fn conditioning_codec() -> Option<weft::model::ltx::condition::Compressor> {
    Some(weft::pipeline::condition::libx264())
}

#[cfg(not(feature = "ffmpeg"))]
fn conditioning_codec() -> Option<weft::model::ltx::condition::Compressor> {
    None
}

pub fn model_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model-path")
            .nick("Model path")
            .blurb(
                "A weft model directory (config.json + model.safetensors), an LTX-Video diffusers snapshot \
                 (a directory with model_index.json; its text encoder is used) or an LTX-Video single-file \
                 checkpoint (.safetensors, with text-encoder), loaded in f32; empty uses the model embedded \
                 in the library",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("steps")
            .nick("Steps")
            .blurb(
                "Sampler steps per generated window (more is slower and finer); 0: the model's default \
                 (4 for weft models, 30 for LTX-Video)",
            )
            .minimum(0)
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
        glib::ParamSpecString::builder("prompt")
            .nick("Prompt")
            .blurb(
                "LTX-Video only: what the generated frames should show (empty: no prompt; encoded by the \
                 model's T5 text encoder). An error with any other model",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("negative-prompt")
            .nick("Negative prompt")
            .blurb("LTX-Video only: what the generated frames should not show (with guidance > 1; empty: none)")
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        // Ranges are checked when the element starts (an ERROR message
        // naming the property), not by GLib, which would only warn.
        glib::ParamSpecDouble::builder("guidance")
            .nick("Guidance")
            .blurb(
                "LTX-Video only: classifier-free guidance scale in [1, 50], 1 = off (twice the work when on); \
                 0: the sampling recipe's (3.0 dev, 1.0 distilled; see ltx-preset)",
            )
            .default_value(DEFAULT_GUIDANCE)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("ltx-preset")
            .nick("LTX-Video recipe")
            .blurb(
                "LTX-Video only: sampling recipe, dev (guidance 3, 30 steps) or distilled (no guidance, the \
                 fixed timesteps 1000,993,987,981,975,909,725,0.03); empty: distilled when the checkpoint's \
                 name says \"distilled\" or its metadata lists fixed inference steps, else dev",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("gen-size")
            .nick("Generation size")
            .blurb(
                "LTX-Video only: short side, in pixels (32..=2048), of the size frames are generated at \
                 (scaled to it and back to the stream's size)",
            )
            .default_value(DEFAULT_GEN_SIZE)
            .mutable_ready()
            .build(),
        glib::ParamSpecDouble::builder("condition-blur")
            .nick("Conditioning blur")
            .blurb(
                "LTX-Video only: sigma in (0, 10] of a 3x3 Gaussian blur of the frames that condition the \
                 generation, at the generation size, as LTX-Video's official inference does (1.0); the \
                 frames passed through stay as they are; 0: none",
            )
            .default_value(0.0)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("condition-crf")
            .nick("Conditioning CRF")
            .blurb(
                "LTX-Video only: libx264 constant rate factor (1..=51) of a round trip of the conditioning \
                 frames (after condition-blur), as LTX-Video's official inference does (29); needs a plugin \
                 built with the ffmpeg feature; 0: none",
            )
            .default_value(0)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("text-encoder")
            .nick("Text encoder")
            .blurb(
                "LTX-Video only: the T5 text encoder, a directory holding text_encoder/ and tokenizer/ (e.g. \
                 an LTX-Video diffusers snapshot) or a T5 directory itself; needed by a single-file \
                 checkpoint, replaces a snapshot's own; empty: the snapshot's",
            )
            .default_value(Some(""))
            .mutable_ready()
            .build(),
    ]
}

/// Sets one of the [`model_properties`]; false when `name` is not one.
pub fn set_model_property(s: &mut ModelSettings, name: &str, value: &glib::Value) -> bool {
    let string = |v: &glib::Value| v.get::<Option<String>>().expect("type checked").unwrap_or_default();
    match name {
        "model-path" => s.model_path = string(value),
        "steps" => s.steps = value.get().expect("type checked"),
        "seed" => s.seed = value.get().expect("type checked"),
        "device" => {
            s.device = value
                .get::<Option<String>>()
                .expect("type checked")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_DEVICE.into())
        }
        "prompt" => s.prompt = string(value),
        "negative-prompt" => s.negative_prompt = string(value),
        "guidance" => s.guidance = value.get().expect("type checked"),
        "gen-size" => s.gen_size = value.get().expect("type checked"),
        "text-encoder" => s.text_encoder = string(value),
        "ltx-preset" => s.ltx_preset = string(value),
        "condition-blur" => s.condition_blur = value.get().expect("type checked"),
        "condition-crf" => s.condition_crf = value.get().expect("type checked"),
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
        "prompt" => s.prompt.to_value(),
        "negative-prompt" => s.negative_prompt.to_value(),
        "guidance" => s.guidance.to_value(),
        "gen-size" => s.gen_size.to_value(),
        "text-encoder" => s.text_encoder.to_value(),
        "ltx-preset" => s.ltx_preset.to_value(),
        "condition-blur" => s.condition_blur.to_value(),
        "condition-crf" => s.condition_crf.to_value(),
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

/// The generation options of the settings (checked by [`load_engine`] when
/// the element started; a value changed while playing and out of range
/// falls back to the defaults).
pub fn generate_options(s: &ModelSettings) -> weft::GenerateOptions {
    let steps = if s.steps == DEFAULT_STEPS { weft::tasks::DEFAULT_STEPS } else { s.steps as usize };
    weft::GenerateOptions {
        steps,
        seed: s.seed,
        device: None,
        window: None,
        ltx: if s.is_ltx() { s.ltx_settings().unwrap_or_default() } else { Default::default() },
        // Window and denoising-step progress in the debug log.
        observer: s.is_ltx().then(|| {
            weft::tasks::Observer(std::sync::Arc::new(|e: &weft::tasks::StepEvent| {
                gst::info!(
                    CAT,
                    "LTX-Video window {}/{}, step {}/{}, {:.1} s so far, ETA {:.0} s",
                    e.window,
                    e.windows,
                    e.step,
                    e.steps,
                    e.elapsed,
                    e.eta
                );
            }))
        }),
        ..Default::default()
    }
}
