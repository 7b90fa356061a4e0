//! The model's hyper-parameters, saved beside the weights as `config.json`.

use serde::{Deserialize, Serialize};

use crate::error::{Result, WeftError};

/// How the weights are stored on disk. Computation is always in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    F32,
    F16,
    Bf16,
}

impl WeightDtype {
    pub fn candle(self) -> candle_core::DType {
        match self {
            WeightDtype::F32 => candle_core::DType::F32,
            WeightDtype::F16 => candle_core::DType::F16,
            WeightDtype::Bf16 => candle_core::DType::BF16,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Bf16 => "bf16",
        }
    }
}

/// What the flow of the frames to generate starts from (flow time 1).
///
/// * `noise`: pure Gaussian noise (classic rectified flow).
/// * `blend`: the cross-fade of the nearest known frames on each side (the
///   nearest one alone when only one side has any), plus `prior_noise` of
///   Gaussian noise: the model learns the path from that estimate to the
///   truth (a flow bridge).
/// * `motion`: like `blend`, but the in-between estimate is motion
///   compensated (block-matching flow both ways, see `tasks::motion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prior {
    Noise,
    Blend,
    Motion,
}

impl Prior {
    /// Configs written before the field existed were trained from noise.
    fn legacy() -> Self {
        Prior::Noise
    }
    pub fn name(self) -> &'static str {
        match self {
            Prior::Noise => "noise",
            Prior::Blend => "blend",
            Prior::Motion => "motion",
        }
    }
}

fn default_prior_noise() -> f32 {
    1.0
}

/// Hyper-parameters of the spacetime-patch diffusion transformer.
///
/// Nothing here fixes the frame size or the number of frames: positions in
/// (t, y, x) are rotary-encoded, so any resolution, aspect ratio and window
/// length runs with the same weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Side of the square spatial patch, in pixels. Frames are padded
    /// internally to a multiple of it and cropped back.
    pub patch_size: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; `hidden_size / num_heads` must be a multiple of 16
    /// (the rotary code splits each head into t, y and x parts).
    pub num_heads: usize,
    /// MLP hidden width as a multiple of `hidden_size`.
    pub mlp_ratio: usize,
    /// Side of the spatial attention window, in patches. Each block attends
    /// within a spacetime window of (all frames) x window x window tokens.
    pub window: usize,
    /// Default number of frame slots per model window (known + generated).
    pub frames: usize,
    /// Width of the sinusoidal timestep features fed to the conditioning MLP.
    pub time_freq_dim: usize,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Storage dtype of `model.safetensors`.
    pub weight_dtype: WeightDtype,
    /// What the flow starts from (see [`Prior`]).
    #[serde(default = "Prior::legacy")]
    pub prior: Prior,
    /// Standard deviation (in [-1, 1] pixel units) of the Gaussian noise added
    /// to a `blend`/`motion` prior at flow time 1. Ignored for `noise`.
    #[serde(default = "default_prior_noise")]
    pub prior_noise: f32,
    /// Whether the weights were trained (`weft model export` sets it for a
    /// training run's weights). Only trained weights refine the estimate: an
    /// untrained transformer would cost every sampling step and change
    /// nothing, so a model without it is its prior's estimate alone (the
    /// cross-fade for a `noise` prior, which has no estimate of its own).
    #[serde(default)]
    pub trained: bool,
}

impl Default for Config {
    /// The default model: 16x16 patches, ~4.4 M parameters (8.9 MB in f16),
    /// flow from a motion-compensated estimate with no added noise: a
    /// deterministic bridge, so what the model learns is the correction of
    /// the estimate (the mean-square-optimal one, which is what PSNR rewards).
    fn default() -> Self {
        Self {
            patch_size: 16,
            hidden_size: 192,
            depth: 6,
            num_heads: 6,
            mlp_ratio: 4,
            window: 8,
            frames: 8,
            time_freq_dim: 128,
            rope_theta: 100.0,
            weight_dtype: WeightDtype::F16,
            prior: Prior::Motion,
            prior_noise: 0.0,
            trained: false,
        }
    }
}

impl Config {
    /// A very small config for tests and examples.
    pub fn tiny() -> Self {
        Self {
            patch_size: 4,
            hidden_size: 32,
            depth: 2,
            num_heads: 2,
            mlp_ratio: 2,
            window: 4,
            frames: 6,
            time_freq_dim: 16,
            rope_theta: 100.0,
            weight_dtype: WeightDtype::F32,
            prior: Prior::Motion,
            prior_noise: 0.02,
            trained: false,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// Rotary split of one head: (t, y, x) dimensions, each even.
    pub fn rope_split(&self) -> (usize, usize, usize) {
        let hd = self.head_dim();
        let t = hd / 4;
        let yx = (hd - t) / 2;
        (t, yx, yx)
    }

    /// Checks that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(WeftError::InvalidConfig(m));
        if self.patch_size == 0 || self.patch_size > 64 {
            return bad(format!("patch_size {} must be in 1..=64", self.patch_size));
        }
        if self.hidden_size == 0 || self.depth == 0 || self.num_heads == 0 || self.mlp_ratio == 0 {
            return bad("hidden_size, depth, num_heads and mlp_ratio must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.head_dim().is_multiple_of(16) {
            return bad(format!("head dim {} must be a multiple of 16", self.head_dim()));
        }
        if self.window == 0 {
            return bad("window must be positive".into());
        }
        // Far above any useful model: a damaged config is an error, not a
        // loop over billions of blocks or a width whose products overflow.
        if self.hidden_size > 16384 || self.depth > 1024 || self.mlp_ratio > 64 || self.time_freq_dim > 65536 {
            return bad(format!(
                "implausible sizes (hidden_size {}, depth {}, mlp_ratio {}, time_freq_dim {}): at most 16384, 1024, 64, 65536",
                self.hidden_size, self.depth, self.mlp_ratio, self.time_freq_dim
            ));
        }
        if self.window > 4096 || self.frames > 4096 {
            return bad(format!("window {} and frames {} must be at most 4096", self.window, self.frames));
        }
        if self.frames < 2 {
            return bad(format!("frames {} must be at least 2", self.frames));
        }
        if self.time_freq_dim < 2 || !self.time_freq_dim.is_multiple_of(2) {
            return bad(format!("time_freq_dim {} must be even and >= 2", self.time_freq_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta {} must be > 1", self.rope_theta));
        }
        if !(self.prior_noise.is_finite() && self.prior_noise >= 0.0 && self.prior_noise <= 10.0) {
            return bad(format!("prior_noise {} must be in 0..=10", self.prior_noise));
        }
        Ok(())
    }

    /// Channels of one flattened patch.
    pub fn patch_dim(&self) -> usize {
        3 * self.patch_size * self.patch_size
    }
}
