//! One window of weft's plan through LTX-Video: frames at known positions
//! condition the generation (`LTXConditionPipeline`), the other positions
//! are generated, decoded and handed back at the clip's own size.
//!
//! * **Size**: frames are scaled so that their short side is
//!   [`LtxSettings::gen_size`] (aspect ratio kept), then padded by repeating
//!   their edges up to the VAE's spatial multiple (its compression times the
//!   transformer's patch size, read from the configs); generated frames are
//!   cropped back and scaled to the clip's size (bilinear, with a box
//!   prefilter when shrinking).
//! * **Length**: a window of `n` slots runs as the next `k * temporal + 1`
//!   frames (the VAE's temporal compression); slots past `n` are dropped.
//! * **Conditions**: a run of known frames at the window's start is one video
//!   condition in place (its first `k * temporal + 1` frames), every other
//!   known frame an image condition at its own frame index, strength 1.
//! * **Colour**: the decoded frames at the known positions are the model's
//!   reconstruction of frames whose true pixels we have; a per-channel gain
//!   and offset that maps the reconstruction's statistics onto the real
//!   frames' is applied to the generated frames, so colour and exposure stay
//!   on the real context from window to window (bounded, and off with
//!   `match_colour = false`).
//! * **Conditioning frames** may be blurred and sent through a codec first,
//!   as the official inference does ([`super::condition`]; off by default).

use candle_core::{DType, Device, Tensor};

use super::condition::FramePrep;
use super::load::{LtxInspection, LtxVideo};
use super::pipeline::{Condition, ConditionOptions, LtxPipeline, Noise, PromptBatch, VideoOptions};
use crate::error::{Result, WeftError};
use crate::frame::Frame;

/// How weft runs LTX-Video (the CLI's `--prompt`, `--guidance`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct LtxSettings {
    /// The text prompt; empty: the cached empty prompt.
    pub prompt: String,
    /// The negative prompt (classifier-free guidance only); `None`: `""`.
    pub negative_prompt: Option<String>,
    /// Classifier-free guidance scale; 1 turns it off (distilled checkpoints).
    pub guidance: f64,
    /// Denoising steps (ignored when `timesteps` is set).
    pub steps: usize,
    /// Explicit timesteps in (0, 1000] (a distilled checkpoint's fixed list).
    pub timesteps: Option<Vec<f64>>,
    /// Short side of the generation size, in pixels.
    pub gen_size: usize,
    /// Per-step noise on the conditioning tokens (diffusers' `image_cond_noise_scale`).
    pub image_cond_noise_scale: f64,
    /// For timestep-conditioned VAEs (0.9.1+).
    pub decode_timestep: f64,
    pub decode_noise_scale: f64,
    /// Token limit of the prompt.
    pub max_sequence_length: usize,
    /// Match the generated frames' colour statistics to the real context.
    pub match_colour: bool,
    /// Frame slots per window (rounded up to `k * temporal + 1`).
    pub window: usize,
    /// Fixed frames before the slots that condition each window, in place
    /// (rounded down to `k * temporal + 1`): the previous window's generated
    /// frames and the real ones.
    pub context: usize,
    /// Real frames after a gap that condition the window that reaches them
    /// (each costs a latent frame of tokens).
    pub after: usize,
    /// Frames per second of the clip (the model's rotary time coordinates).
    pub frame_rate: f64,
    /// Sigma of the 3x3 Gaussian blur of the conditioning frames at the
    /// generation size, as the official inference does (1.0); 0: none.
    /// See [`super::condition`].
    pub condition_blur: f64,
    /// Constant rate factor of the round trip of the conditioning frames
    /// through [`Self::condition_codec`] (the official inference: libx264 at
    /// 29); 0: none.
    pub condition_crf: u32,
    /// The codec of that round trip (`weft::pipeline::condition::libx264`).
    pub condition_codec: Option<super::condition::Compressor>,
}

impl Default for LtxSettings {
    /// The official inference's defaults for the dev checkpoints.
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            guidance: 3.0,
            steps: 30,
            timesteps: None,
            gen_size: 512,
            image_cond_noise_scale: 0.15,
            decode_timestep: 0.05,
            decode_noise_scale: 0.025,
            max_sequence_length: 128,
            match_colour: true,
            window: 49,
            context: 17,
            after: 2,
            frame_rate: 25.0,
            condition_blur: 0.0,
            condition_crf: 0,
            condition_codec: None,
        }
    }
}

/// The sampling recipes of the released checkpoints: `dev` (classifier-free
/// guidance, a flow-match schedule of `steps`) and `distilled` (no guidance,
/// a fixed list of eight timesteps), as diffusers documents them for
/// `LTXConditionPipeline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LtxPreset {
    Dev,
    Distilled,
}

impl LtxPreset {
    /// The distilled checkpoints' timesteps (diffusers' LTX-Video guide).
    pub const DISTILLED_TIMESTEPS: [f64; 8] = [1000.0, 993.0, 987.0, 981.0, 975.0, 909.0, 725.0, 0.03];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Distilled => "distilled",
        }
    }

    /// `dev` or `distilled`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" => Some(Self::Dev),
            "distilled" => Some(Self::Distilled),
            _ => None,
        }
    }

    /// The settings of this recipe (everything else at its default).
    pub fn settings(self) -> LtxSettings {
        match self {
            Self::Dev => LtxSettings::default(),
            Self::Distilled => LtxSettings {
                guidance: 1.0,
                steps: Self::DISTILLED_TIMESTEPS.len(),
                timesteps: Some(Self::DISTILLED_TIMESTEPS.to_vec()),
                image_cond_noise_scale: 0.0,
                ..LtxSettings::default()
            },
        }
    }
}

impl std::fmt::Display for LtxPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LtxSettings {
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(WeftError::BadOptions(m));
        if !(self.guidance.is_finite() && self.guidance >= 1.0 && self.guidance <= 50.0) {
            return bad(format!("guidance must be in [1, 50] (1: off), got {}", self.guidance));
        }
        if self.timesteps.is_none() && !(1..=1000).contains(&self.steps) {
            return bad(format!("steps must be in 1..=1000, got {}", self.steps));
        }
        if let Some(t) = &self.timesteps
            && (t.is_empty() || t.iter().any(|v| !(v.is_finite() && *v > 0.0 && *v <= 1000.0)))
        {
            return bad(format!("timesteps must be a non-empty list in (0, 1000], got {t:?}"));
        }
        if !(32..=2048).contains(&self.gen_size) {
            return bad(format!("generation size must be in 32..=2048 pixels, got {}", self.gen_size));
        }
        if !(0.0..=1.0).contains(&self.decode_timestep) || !(0.0..=1.0).contains(&self.decode_noise_scale) {
            return bad("decode timestep and noise scale must be in [0, 1]".into());
        }
        if !(2..=1024).contains(&self.window) {
            return bad(format!("window must be in 2..=1024 frames, got {}", self.window));
        }
        if self.context == 0 || self.context >= self.window {
            return bad(format!("context must be in 1..{} (the window), got {}", self.window, self.context));
        }
        if !(self.frame_rate.is_finite() && self.frame_rate > 0.0 && self.frame_rate <= 1000.0) {
            return bad(format!("frame rate must be in (0, 1000], got {}", self.frame_rate));
        }
        if !(0.0..=1.0).contains(&self.image_cond_noise_scale) {
            return bad(format!("image_cond_noise_scale must be in [0, 1], got {}", self.image_cond_noise_scale));
        }
        super::condition::FramePrep::of(self)?;
        Ok(())
    }

    /// Classifier-free guidance on?
    pub fn guided(&self) -> bool {
        self.guidance > 1.0
    }
}

fn model_err(e: candle_core::Error) -> WeftError {
    WeftError::Tensor(e)
}

/// Encodes the settings' prompt (and, with guidance, the negative prompt)
/// with the model's T5.
pub fn encode_prompts(ltx: &LtxVideo, s: &LtxSettings) -> Result<PromptBatch> {
    let text = &ltx.text;
    let positive = text.encode_one(&s.prompt, s.max_sequence_length)?;
    if positive.truncated.first().copied().unwrap_or(false) {
        return Err(WeftError::BadOptions(format!(
            "the prompt is longer than {} tokens: shorten it",
            s.max_sequence_length
        )));
    }
    let negative = if s.guided() {
        Some(text.encode_one(s.negative_prompt.as_deref().unwrap_or(""), s.max_sequence_length)?)
    } else {
        None
    };
    Ok(PromptBatch::new(positive, negative))
}

/// The generation geometry of a clip: scaled size, padded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The clip's frame size.
    pub width: usize,
    pub height: usize,
    /// Scaled to the generation size (aspect ratio kept).
    pub scaled_width: usize,
    pub scaled_height: usize,
    /// Padded up to the model's spatial multiple.
    pub gen_width: usize,
    pub gen_height: usize,
}

impl Geometry {
    pub fn new(width: usize, height: usize, gen_size: usize, multiple: usize) -> Self {
        let s = gen_size as f64 / width.min(height) as f64;
        let sw = ((width as f64 * s).round() as usize).max(1);
        let sh = ((height as f64 * s).round() as usize).max(1);
        let up = |v: usize| v.div_ceil(multiple) * multiple;
        Geometry { width, height, scaled_width: sw, scaled_height: sh, gen_width: up(sw), gen_height: up(sh) }
    }
}

/// Pixels per latent pixel times the transformer's patch: the multiple that
/// generation sizes are padded to.
pub fn spatial_multiple(ltx: &LtxVideo) -> usize {
    ltx.vae.config.spatial_compression() * ltx.transformer.config().patch_size
}

/// Frames per latent frame ([`temporal_multiple_of`]).
pub fn temporal_multiple(ltx: &LtxVideo) -> usize {
    temporal_multiple_of(&ltx.vae.config, ltx.transformer.config())
}

/// Frames per latent frame: the VAE's temporal compression times the
/// transformer's temporal patch. Windows are `k * this + 1` frames long.
pub fn temporal_multiple_of(vae: &super::vae::Config, transformer: &super::transformer::Config) -> usize {
    vae.temporal_compression() * transformer.patch_size_t
}

impl LtxInspection {
    /// Frames per latent frame ([`temporal_multiple_of`]), known from the
    /// configs before any weight is read.
    pub fn temporal_multiple(&self) -> usize {
        temporal_multiple_of(&self.vae_config, &self.transformer_config)
    }
}

/// The smallest `k * t + 1 >= n`.
pub fn frames_for(n: usize, t: usize) -> usize {
    n.saturating_sub(1).div_ceil(t) * t + 1
}

/// A window: `frames` consecutive slots, some known.
pub struct Window<'a> {
    pub frames: usize,
    /// Known frames by slot index (sorted, unique, all of one size).
    pub known: Vec<(usize, &'a Frame)>,
    pub frame_rate: f64,
    pub seed: u64,
}

/// `[3, H, W]` in [-1, 1] at the generation size, prepared by `prep` (a
/// conditioning frame's blur and codec round trip), edges repeated into the
/// padding.
fn to_model(f: &Frame, g: &Geometry, prep: &FramePrep<'_>, dev: &Device) -> Result<Tensor> {
    let t = Tensor::from_vec(f.data().to_vec(), (f.height(), f.width(), 3), &Device::Cpu)?
        .permute((2, 0, 1))?
        .to_dtype(DType::F32)?
        .affine(1.0 / 127.5, -1.0)?
        .unsqueeze(0)?;
    let t = resize(&t, g.scaled_height, g.scaled_width)?;
    let t = prep.apply(&t)?;
    let t = pad_edges(&t, g.gen_height, g.gen_width)?;
    Ok(t.squeeze(0)?.to_device(dev)?)
}

/// `[1, C, H, W]` -> `[1, C, oh, ow]` (oh >= H, ow >= W) repeating the last row/column.
fn pad_edges(t: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = t.dims4()?;
    let mut t = t.clone();
    if ow > w {
        let col = t.narrow(3, w - 1, 1)?.repeat((1, 1, 1, ow - w))?;
        t = Tensor::cat(&[&t, &col], 3)?;
    }
    if oh > h {
        let row = t.narrow(2, h - 1, 1)?.repeat((1, 1, oh - h, 1))?;
        t = Tensor::cat(&[&t, &row], 2)?;
    }
    Ok(t)
}

/// Bilinear resize of `[1, C, H, W]`, with a box prefilter when shrinking by
/// 2x or more (bilinear alone aliases).
fn resize(t: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = t.dims4()?;
    let k = (h / oh).min(w / ow);
    let t = if k >= 2 { t.avg_pool2d(k)? } else { t.clone() };
    Ok(crate::model::rife::ops::resize(&t, oh, ow)?)
}

/// Decoded `[3, gh, gw]` in [-1, 1] (f32) -> `[3, H, W]` in [-1, 1] at the clip size.
fn from_model(t: &Tensor, g: &Geometry) -> Result<Tensor> {
    let t = t.narrow(1, 0, g.scaled_height)?.narrow(2, 0, g.scaled_width)?.unsqueeze(0)?;
    Ok(resize(&t.to_device(&Device::Cpu)?, g.height, g.width)?.squeeze(0)?)
}

/// Per-channel (gain, offset) mapping `decoded` onto `real` (both `[N, 3, H, W]`-like
/// lists of `[3, H, W]`): matching mean and standard deviation, the gain kept
/// within [0.8, 1.25] and the offset within 0.25 (in [-1, 1] units).
fn colour_map(decoded: &[Tensor], real: &[Tensor]) -> Result<[(f64, f64); 3]> {
    let stats = |ts: &[Tensor]| -> Result<[(f64, f64); 3]> {
        let all = Tensor::stack(ts, 0)?.permute((1, 0, 2, 3))?.flatten_from(1)?; // [3, n]
        let mean = all.mean(1)?.to_vec1::<f32>()?;
        let var = all.broadcast_sub(&all.mean_keepdim(1)?)?.sqr()?.mean(1)?.to_vec1::<f32>()?;
        Ok([0, 1, 2].map(|c| (mean[c] as f64, (var[c] as f64).sqrt())))
    };
    let (d, r) = (stats(decoded)?, stats(real)?);
    Ok([0, 1, 2].map(|c| {
        let gain = if d[c].1 > 1e-3 { (r[c].1 / d[c].1).clamp(0.8, 1.25) } else { 1.0 };
        let offset = (r[c].0 - gain * d[c].0).clamp(-0.25, 0.25);
        (gain, offset)
    }))
}

/// Generates the unknown slots of `w`: `(slot index, frame)` in index order.
/// `on_step(done, total)` is called after every denoising step.
pub fn generate_window(
    ltx: &LtxVideo,
    prompts: &PromptBatch,
    w: &Window<'_>,
    s: &LtxSettings,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Vec<(usize, Frame)>> {
    s.check()?;
    let Some(&(_, first)) = w.known.first() else {
        return Err(WeftError::BadPlan("an LTX-Video window needs at least one known frame".into()));
    };
    let (width, height) = (first.width(), first.height());
    if let Some((i, f)) = w.known.iter().find(|(_, f)| (f.width(), f.height()) != (width, height)) {
        return Err(WeftError::BadPlan(format!(
            "conditioning frame at slot {i} is {}x{}, the others are {width}x{height}",
            f.width(),
            f.height()
        )));
    }
    if w.known.iter().any(|(i, _)| *i >= w.frames) || w.known.windows(2).any(|p| p[0].0 >= p[1].0) {
        return Err(WeftError::BadPlan("known slots must be sorted, unique and inside the window".into()));
    }
    let dev = ltx.device().clone();
    let g = Geometry::new(width, height, s.gen_size, spatial_multiple(ltx));
    let tc = temporal_multiple(ltx);
    let num_frames = frames_for(w.frames, tc);

    // The conditions: a leading run of known frames in place, the rest
    // images; prepared as the settings say (the frames themselves untouched).
    let prep = FramePrep::of(s)?;
    let lead = w.known.iter().enumerate().take_while(|(k, (i, _))| *k == *i).count();
    let lead = if lead == 0 { 0 } else { (lead - 1) / tc * tc + 1 };
    let mut conditions = Vec::new();
    if lead > 0 {
        let frames: Vec<Tensor> =
            w.known[..lead].iter().map(|(_, f)| to_model(f, &g, &prep, &dev)).collect::<Result<_>>()?;
        let video = Tensor::stack(&frames, 1)?; // [3, F, H, W]
        conditions.push(Condition::new(video, 0, 1.0));
    }
    for (i, f) in &w.known[lead..] {
        conditions.push(Condition::new(to_model(f, &g, &prep, &dev)?.unsqueeze(1)?, *i, 1.0));
    }
    let opts = VideoOptions {
        height: g.gen_height,
        width: g.gen_width,
        num_frames,
        frame_rate: w.frame_rate,
        num_inference_steps: s.steps,
        guidance_scale: s.guidance,
        guidance_rescale: 0.0,
        decode_timestep: s.decode_timestep,
        decode_noise_scale: Some(s.decode_noise_scale),
        decode: true,
    };
    let copts = ConditionOptions {
        image_cond_noise_scale: s.image_cond_noise_scale,
        timesteps: s.timesteps.clone(),
        ..ConditionOptions::default()
    };
    let pipe = LtxPipeline::new(&ltx.transformer, &ltx.vae, &ltx.scheduler);
    let out = pipe
        .condition_observed(prompts, &conditions, &opts, &copts, &mut Noise::seeded(w.seed), on_step)
        .map_err(model_err)?;
    let video = out.video.expect("decoded").squeeze(0)?; // [3, F, H, W]
    let at = |i: usize| -> Result<Tensor> { from_model(&video.narrow(1, i, 1)?.squeeze(1)?, &g) };

    let map = if s.match_colour {
        let mut dec = Vec::new();
        let mut real = Vec::new();
        for (i, f) in &w.known {
            dec.push(at(*i)?);
            real.push(
                Tensor::from_vec(f.data().to_vec(), (height, width, 3), &Device::Cpu)?
                    .permute((2, 0, 1))?
                    .to_dtype(DType::F32)?
                    .affine(1.0 / 127.5, -1.0)?,
            );
        }
        Some(colour_map(&dec, &real)?)
    } else {
        None
    };
    let mut result = Vec::new();
    let mut known = w.known.iter().map(|(i, _)| *i).peekable();
    for i in 0..w.frames {
        if known.peek() == Some(&i) {
            known.next();
            continue;
        }
        let mut t = at(i)?;
        if let Some(m) = &map {
            let chans: Vec<Tensor> = (0..3).map(|c| t.get(c)?.affine(m[c].0, m[c].1)).collect::<candle_core::Result<_>>()?;
            t = Tensor::stack(&chans, 0)?;
        }
        result.push((i, Frame::from_planar(&t, 127.5, 127.5)?));
    }
    Ok(result)
}

/// A rough peak-memory estimate of one window in bytes (weights excluded):
/// the transformer's activations for its tokens and the VAE decoder's
/// largest feature maps.
pub fn window_memory(ltx: &LtxVideo, g: &Geometry, num_frames: usize, conditions: usize, guided: bool) -> u64 {
    let sc = spatial_multiple(ltx) as u64;
    let tc = temporal_multiple(ltx) as u64;
    let (lh, lw) = (g.gen_height as u64 / sc, g.gen_width as u64 / sc);
    let lf = (num_frames as u64 - 1) / tc + 1;
    let tokens = lf * lh * lw + conditions as u64 * lh * lw;
    let d = ltx.transformer.config().inner_dim() as u64;
    let batch = if guided { 2 } else { 1 };
    let act = batch * tokens * d * 4 * 12; // hidden, q/k/v, 4x feed-forward, in f32
    // Decoder: measured (scripts/bench-ltx, 0.9.5 VAE, f32) about 115 bytes
    // per output pixel beyond its weights at 768x512x49 and 64 at 512x320x25;
    // 256 leaves twice the larger.
    let pix = g.gen_height as u64 * g.gen_width as u64 * num_frames as u64;
    let vae = pix * 256;
    act.max(vae)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_keeps_the_aspect_and_pads_to_the_multiple() {
        let g = Geometry::new(175, 143, 512, 32);
        assert_eq!((g.scaled_width, g.scaled_height), (627, 512));
        assert_eq!((g.gen_width, g.gen_height), (640, 512));
        let g = Geometry::new(1920, 1080, 512, 32);
        assert_eq!((g.scaled_width, g.scaled_height, g.gen_width, g.gen_height), (910, 512, 928, 512));
        assert_eq!(frames_for(1, 8), 1);
        assert_eq!(frames_for(2, 8), 9);
        assert_eq!(frames_for(49, 8), 49);
        assert_eq!(frames_for(50, 8), 57);
    }

    #[test]
    fn colour_map_undoes_a_gain_and_offset_within_bounds() {
        let real = Tensor::arange(0f32, 48.0, &Device::Cpu).unwrap().affine(1.0 / 48.0, -0.5).unwrap().reshape((3, 4, 4)).unwrap();
        let dec = real.affine(0.9, 0.05).unwrap();
        let m = colour_map(&[dec], &[real]).unwrap();
        for (gain, offset) in m {
            assert!((gain - 1.0 / 0.9).abs() < 1e-3, "{gain}");
            assert!((offset + 0.05 / 0.9).abs() < 1e-3, "{offset}");
        }
    }
}
