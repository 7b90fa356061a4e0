//! Loading LTX-Video: a diffusers snapshot directory or a single-file
//! Lightricks checkpoint (`ltxv-2b-0.9.x*.safetensors`), into one
//! [`LtxVideo`] bundle (transformer, VAE, scheduler config, a lazily loaded
//! T5 text encoder).
//!
//! * **diffusers snapshot**: `model_index.json` (an LTX pipeline class),
//!   `transformer/` and `vae/` (`config.json` + `diffusion_pytorch_model.safetensors`,
//!   or shards `diffusion_pytorch_model-0000i-of-0000n.safetensors` listed by
//!   `diffusion_pytorch_model.safetensors.index.json`),
//!   `scheduler/scheduler_config.json`, optionally `text_encoder/` + `tokenizer/`.
//! * **single file**: transformer tensors under `model.diffusion_model.*` (or
//!   bare), the VAE under `vae.*`, renamed exactly as diffusers 0.42.1's
//!   single-file loader does (`convert_ltx_transformer_checkpoint_to_diffusers`,
//!   `convert_ltx_vae_checkpoint_to_diffusers` in `loaders/single_file_utils.py`:
//!   ordered substring replacements, then the per-channel statistics it drops).
//!   The version is detected as `infer_diffusers_model_type` does (48 blocks:
//!   0.9.7; VAE `encoder.conv_out` reading 2048 channels: 0.9.5; a
//!   `decoder.last_time_embedder`: 0.9.1; else 0.9.0) and the configs are
//!   that version's ([`LtxVersion::transformer_config`] ...), unless the
//!   safetensors metadata carries a `config` JSON (`{"transformer": {...},
//!   "vae": {...}}`, as Lightricks writes it): its transformer fields are used
//!   (they share diffusers' names), and its VAE when it is in diffusers' form
//!   (`block_out_channels` ...); Lightricks' own VAE block lists are not
//!   translated, the version's config is used instead. The text encoder comes
//!   from a separate directory.
//!
//! Everything is checked from the safetensors headers before any weight is
//! read ([`inspect`]): every tensor present, none unexpected, shapes, float
//! storage, data offsets inside the file (a truncated file is an error naming
//! it), shard indexes consistent. Weights are then read tensor by tensor with
//! positioned reads behind a renaming `VarBuilder` backend (no memory map).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use candle_transformers::models::t5::{Config as T5Config, T5EncoderModel};
use serde_json::{Value, json};

use super::scheduler::SchedulerConfig;
use super::generate::LtxPreset;
use super::text::{EmptyPromptCache, LtxTextEncoder, PromptEmbeds};
use super::transformer::{self as tr, LtxVideoTransformer3DModel};
use super::vae::{self, AutoencoderKLLTXVideo};
use crate::error::{Result, WeftError};

// ------------------------------------------------------------------ versions

/// An LTX-Video architecture, named as diffusers' single-file loader names
/// them (`infer_diffusers_model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LtxVersion {
    /// 0.9.0: 2B, the first VAE (`LTXVideoDownBlock3D`, no timestep conditioning).
    V0_9_0,
    /// 0.9.1: 2B, a timestep-conditioned VAE decoder with noise injection.
    V0_9_1,
    /// 0.9.5 (also 0.9.6 and the 0.9.8 2B models, which diffusers reads as
    /// 0.9.5): 2B, the `LTXVideo095DownBlock3D` VAE.
    V0_9_5,
    /// 0.9.7 (also 0.9.8 13B): the 13B transformer, the 0.9.5 VAE.
    V0_9_7,
}

impl LtxVersion {
    pub const ALL: [LtxVersion; 4] = [Self::V0_9_0, Self::V0_9_1, Self::V0_9_5, Self::V0_9_7];

    pub fn name(self) -> &'static str {
        match self {
            Self::V0_9_0 => "0.9.0",
            Self::V0_9_1 => "0.9.1",
            Self::V0_9_5 => "0.9.5",
            Self::V0_9_7 => "0.9.7",
        }
    }

    /// The releases this architecture covers.
    pub fn releases(self) -> &'static str {
        match self {
            Self::V0_9_0 => "0.9.0 2B",
            Self::V0_9_1 => "0.9.1 2B",
            Self::V0_9_5 => "0.9.5 / 0.9.6 / 0.9.8 2B",
            Self::V0_9_7 => "0.9.7 / 0.9.8 13B",
        }
    }

    /// diffusers' model type (`infer_diffusers_model_type`).
    pub fn diffusers_model_type(self) -> &'static str {
        match self {
            Self::V0_9_0 => "ltx-video",
            Self::V0_9_1 => "ltx-video-0.9.1",
            Self::V0_9_5 => "ltx-video-0.9.5",
            Self::V0_9_7 => "ltx-video-0.9.7",
        }
    }

    /// The transformer config (diffusers' `scripts/convert_ltx_to_diffusers.py`,
    /// `get_transformer_config`: 2B for every version but 0.9.7's 13B).
    pub fn transformer_config(self) -> tr::Config {
        match self {
            Self::V0_9_7 => tr::Config {
                attention_head_dim: 128,
                cross_attention_dim: 4096,
                num_layers: 48,
                ..tr::Config::ltx_video_2b()
            },
            _ => tr::Config::ltx_video_2b(),
        }
    }

    /// The VAE config (`convert_ltx_to_diffusers.py`, `get_vae_config`; 0.9.7's
    /// equals 0.9.5's).
    pub fn vae_config(self) -> vae::Config {
        match self {
            Self::V0_9_0 => vae::Config::default(),
            Self::V0_9_1 => vae::Config {
                decoder_block_out_channels: vec![256, 512, 1024],
                decoder_layers_per_block: vec![5, 6, 7, 8],
                decoder_spatio_temporal_scaling: vec![true; 3],
                decoder_inject_noise: vec![true, true, true, false],
                upsample_residual: vec![true; 3],
                upsample_factor: vec![2; 3],
                timestep_conditioning: true,
                ..vae::Config::default()
            },
            Self::V0_9_5 | Self::V0_9_7 => vae::Config::ltx_095(),
        }
    }

    /// The scheduler config a single file is sampled with (a snapshot brings
    /// its own): `convert_ltx_to_diffusers.py`'s `FlowMatchEulerDiscreteScheduler`
    /// for the version (0.9.0 / 0.9.1: dynamic shifting 0.95..2.05 over
    /// 1024..4096 tokens, terminal 0.1; 0.9.5 / 0.9.7: `use_dynamic_shifting=False`,
    /// everything else the scheduler's defaults).
    pub fn scheduler_config(self) -> SchedulerConfig {
        match self {
            Self::V0_9_0 | Self::V0_9_1 => SchedulerConfig::ltx_video(),
            Self::V0_9_5 | Self::V0_9_7 => SchedulerConfig::default(),
        }
    }

    /// The version of a (transformer, VAE) pair, by the rules of
    /// `infer_diffusers_model_type` read off the configs: 48 or more blocks
    /// is 0.9.7; then the VAE's layout decides.
    pub fn of_configs(t: &tr::Config, v: &vae::Config) -> Self {
        if t.num_layers >= 48 {
            return Self::V0_9_7;
        }
        match VaeNaming::of_config(v) {
            VaeNaming::V095 => Self::V0_9_5,
            VaeNaming::V091 => Self::V0_9_1,
            VaeNaming::V090 => Self::V0_9_0,
        }
    }
}

impl std::fmt::Display for LtxVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A diffusers snapshot directory (diffusers' tensor names).
    Diffusers,
    /// One Lightricks safetensors file (original tensor names).
    SingleFile,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Self::Diffusers => "diffusers snapshot",
            Self::SingleFile => "single file",
        }
    }
}

// -------------------------------------------------------------------- naming

/// Which of diffusers' VAE rename tables applies (chosen in
/// `convert_ltx_vae_checkpoint_to_diffusers` by the checkpoint: 2048 channels
/// into `encoder.conv_out`: 0.9.5; a `decoder.last_time_embedder`: 0.9.1;
/// else 0.9.0 — for the real configs the same as [`VaeNaming::of_config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeNaming {
    V090,
    V091,
    V095,
}

impl VaeNaming {
    pub fn name(self) -> &'static str {
        match self {
            Self::V090 => "0.9.0",
            Self::V091 => "0.9.1",
            Self::V095 => "0.9.5",
        }
    }

    /// By the VAE's layout: `LTXVideo095DownBlock3D` blocks: 0.9.5; a
    /// timestep-conditioned decoder: 0.9.1; else 0.9.0.
    pub fn of_config(cfg: &vae::Config) -> Self {
        if cfg.down_block_types.last().map(String::as_str) == Some("LTXVideo095DownBlock3D") {
            Self::V095
        } else if cfg.timestep_conditioning {
            Self::V091
        } else {
            Self::V090
        }
    }

    /// The ordered replacements (Python dict order after `update`).
    fn table(self) -> Vec<(&'static str, &'static str)> {
        let mut t: Vec<(&str, &str)> = VAE_KEYS_RENAME.to_vec();
        let update: &[(&str, &str)] = match self {
            Self::V090 => &[],
            Self::V091 => VAE_091_RENAME,
            Self::V095 => VAE_095_RENAME,
        };
        for &(k, v) in update {
            match t.iter_mut().find(|(tk, _)| *tk == k) {
                Some(e) => e.1 = v,
                None => t.push((k, v)),
            }
        }
        t
    }
}

/// diffusers 0.42.1 `convert_ltx_transformer_checkpoint_to_diffusers`'s
/// `TRANSFORMER_KEYS_RENAME_DICT`.
const TRANSFORMER_KEYS_RENAME: &[(&str, &str)] = &[
    ("model.diffusion_model.", ""),
    ("patchify_proj", "proj_in"),
    ("adaln_single", "time_embed"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
];

/// `convert_ltx_vae_checkpoint_to_diffusers`'s `VAE_KEYS_RENAME_DICT`.
const VAE_KEYS_RENAME: &[(&str, &str)] = &[
    ("vae.", ""),
    ("up_blocks.0", "mid_block"),
    ("up_blocks.1", "up_blocks.0"),
    ("up_blocks.2", "up_blocks.1.upsamplers.0"),
    ("up_blocks.3", "up_blocks.1"),
    ("up_blocks.4", "up_blocks.2.conv_in"),
    ("up_blocks.5", "up_blocks.2.upsamplers.0"),
    ("up_blocks.6", "up_blocks.2"),
    ("up_blocks.7", "up_blocks.3.conv_in"),
    ("up_blocks.8", "up_blocks.3.upsamplers.0"),
    ("up_blocks.9", "up_blocks.3"),
    ("down_blocks.0", "down_blocks.0"),
    ("down_blocks.1", "down_blocks.0.downsamplers.0"),
    ("down_blocks.2", "down_blocks.0.conv_out"),
    ("down_blocks.3", "down_blocks.1"),
    ("down_blocks.4", "down_blocks.1.downsamplers.0"),
    ("down_blocks.5", "down_blocks.1.conv_out"),
    ("down_blocks.6", "down_blocks.2"),
    ("down_blocks.7", "down_blocks.2.downsamplers.0"),
    ("down_blocks.8", "down_blocks.3"),
    ("down_blocks.9", "mid_block"),
    ("conv_shortcut", "conv_shortcut.conv"),
    ("res_blocks", "resnets"),
    ("norm3.norm", "norm3"),
    ("per_channel_statistics.mean-of-means", "latents_mean"),
    ("per_channel_statistics.std-of-means", "latents_std"),
];

/// `VAE_091_RENAME_DICT`.
const VAE_091_RENAME: &[(&str, &str)] = &[
    ("up_blocks.0", "mid_block"),
    ("up_blocks.1", "up_blocks.0.upsamplers.0"),
    ("up_blocks.2", "up_blocks.0"),
    ("up_blocks.3", "up_blocks.1.upsamplers.0"),
    ("up_blocks.4", "up_blocks.1"),
    ("up_blocks.5", "up_blocks.2.upsamplers.0"),
    ("up_blocks.6", "up_blocks.2"),
    ("up_blocks.7", "up_blocks.3.upsamplers.0"),
    ("up_blocks.8", "up_blocks.3"),
    ("last_time_embedder", "time_embedder"),
    ("last_scale_shift_table", "scale_shift_table"),
];

/// `VAE_095_RENAME_DICT`.
const VAE_095_RENAME: &[(&str, &str)] = &[
    ("up_blocks.0", "mid_block"),
    ("up_blocks.1", "up_blocks.0.upsamplers.0"),
    ("up_blocks.2", "up_blocks.0"),
    ("up_blocks.3", "up_blocks.1.upsamplers.0"),
    ("up_blocks.4", "up_blocks.1"),
    ("up_blocks.5", "up_blocks.2.upsamplers.0"),
    ("up_blocks.6", "up_blocks.2"),
    ("up_blocks.7", "up_blocks.3.upsamplers.0"),
    ("up_blocks.8", "up_blocks.3"),
    ("down_blocks.0", "down_blocks.0"),
    ("down_blocks.1", "down_blocks.0.downsamplers.0"),
    ("down_blocks.2", "down_blocks.1"),
    ("down_blocks.3", "down_blocks.1.downsamplers.0"),
    ("down_blocks.4", "down_blocks.2"),
    ("down_blocks.5", "down_blocks.2.downsamplers.0"),
    ("down_blocks.6", "down_blocks.3"),
    ("down_blocks.7", "down_blocks.3.downsamplers.0"),
    ("down_blocks.8", "mid_block"),
    ("last_time_embedder", "time_embedder"),
    ("last_scale_shift_table", "scale_shift_table"),
];

/// `VAE_SPECIAL_KEYS_REMAP`: keys (after renaming) containing these are dropped.
const VAE_DROPPED: &[&str] = &[
    "per_channel_statistics.channel",
    "per_channel_statistics.mean-of-means",
    "per_channel_statistics.mean-of-stds",
];

/// The prefix Lightricks files put before transformer keys.
pub const TRANSFORMER_PREFIX: &str = "model.diffusion_model.";

/// diffusers' name of a single-file transformer key.
pub fn diffusers_transformer_key(key: &str) -> String {
    let mut k = key.to_string();
    for (from, to) in TRANSFORMER_KEYS_RENAME {
        k = k.replace(from, to);
    }
    k
}

/// diffusers' name of a single-file VAE key (`vae.*`); `None` for the
/// per-channel statistics diffusers drops.
pub fn diffusers_vae_key(key: &str, naming: VaeNaming) -> Option<String> {
    let mut k = key.to_string();
    for (from, to) in naming.table() {
        k = k.replace(from, to);
    }
    if VAE_DROPPED.iter().any(|d| k.contains(d)) { None } else { Some(k) }
}

/// The single-file name of diffusers transformer tensor `name` (the inverse of
/// [`diffusers_transformer_key`], prefixed with [`TRANSFORMER_PREFIX`]).
pub fn original_transformer_key(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('.')
        .map(|p| match p {
            "proj_in" => "patchify_proj",
            "time_embed" => "adaln_single",
            "norm_q" => "q_norm",
            "norm_k" => "k_norm",
            p => p,
        })
        .collect();
    format!("{TRANSFORMER_PREFIX}{}", parts.join("."))
}

/// The single-file name of diffusers VAE tensor `name` (the inverse of
/// [`diffusers_vae_key`]: the block table read backwards, longest diffusers
/// prefix first, then the common renames).
pub fn original_vae_key(name: &str, naming: VaeNaming) -> String {
    match name {
        "latents_mean" => return "vae.per_channel_statistics.mean-of-means".into(),
        "latents_std" => return "vae.per_channel_statistics.std-of-means".into(),
        _ => {}
    }
    let Some((section, rest)) = name.split_once('.') else {
        return format!("vae.{name}");
    };
    let side = if section == "decoder" { "up_blocks." } else { "down_blocks." };
    let mut best: Option<(&str, &str)> = None;
    for (old, new) in naming.table() {
        if old.starts_with(side)
            && (rest == new || rest.starts_with(&format!("{new}.")))
            && best.is_none_or(|(_, b)| new.len() > b.len())
        {
            best = Some((old, new));
        }
    }
    let mut rest = match best {
        Some((old, new)) => format!("{old}{}", &rest[new.len()..]),
        None => rest.to_string(),
    };
    rest = rest
        .split('.')
        .map(|p| if p == "resnets" { "res_blocks" } else { p })
        .collect::<Vec<_>>()
        .join(".");
    rest = rest.replace("conv_shortcut.conv.", "conv_shortcut.").replace("norm3.", "norm3.norm.");
    if section == "decoder" && naming != VaeNaming::V090 {
        if rest.starts_with("time_embedder.") {
            rest = format!("last_{rest}");
        } else if rest == "scale_shift_table" {
            rest = "last_scale_shift_table".into();
        }
    }
    format!("vae.{section}.{rest}")
}

// ---------------------------------------------------------- expected tensors

fn invalid(msg: impl Into<String>) -> WeftError {
    WeftError::InvalidConfig(msg.into())
}

/// Every (file key, shape) a checkpoint of this transformer config holds, in
/// diffusers' state-dict order: diffusers' names for [`Layout::Diffusers`],
/// the original `model.diffusion_model.*` names for [`Layout::SingleFile`].
pub fn transformer_tensors(cfg: &tr::Config, layout: Layout) -> Result<Vec<(String, Vec<usize>)>> {
    validate_transformer_sizes(cfg).map_err(invalid)?;
    let shapes = tr::tensor_shapes(cfg);
    match layout {
        Layout::Diffusers => Ok(shapes),
        Layout::SingleFile => shapes
            .into_iter()
            .map(|(n, s)| {
                let o = original_transformer_key(&n);
                if diffusers_transformer_key(&o) != n {
                    return Err(invalid(format!("transformer tensor `{n}` has no single-file name")));
                }
                Ok((o, s))
            })
            .collect(),
    }
}

/// Bounds far above every LTX-Video release (the 13B model has 48 layers,
/// 32 x 128 heads, 4096 caption channels), so that a damaged config is an
/// error, not a loop over billions of layers or a shape that overflows.
const MAX_LAYERS: usize = 1024;
const MAX_WIDTH: usize = 1 << 20;
const MAX_PATCH: usize = 64;

fn validate_transformer_sizes(c: &tr::Config) -> std::result::Result<(), String> {
    let widths = [c.in_channels, c.out_channels.unwrap_or(0), c.cross_attention_dim, c.caption_channels, c.attention_head_dim];
    if c.num_layers > MAX_LAYERS
        || c.num_attention_heads.checked_mul(c.attention_head_dim).is_none_or(|d| d > MAX_WIDTH)
        || widths.iter().any(|&w| w > MAX_WIDTH)
        || c.patch_size > MAX_PATCH
        || c.patch_size_t > MAX_PATCH
    {
        return Err(format!(
            "LTX transformer config: implausible sizes ({} layers, {} x {} heads, {} in / {} caption / {} cross-attention \
             channels, patch {} x {}): at most {MAX_LAYERS} layers, {MAX_WIDTH} channels, patches of {MAX_PATCH}",
            c.num_layers,
            c.num_attention_heads,
            c.attention_head_dim,
            c.in_channels,
            c.caption_channels,
            c.cross_attention_dim,
            c.patch_size,
            c.patch_size_t
        ));
    }
    Ok(())
}

/// Every (file key, shape) a checkpoint of this VAE config holds, in
/// diffusers' state-dict order: diffusers' names for [`Layout::Diffusers`],
/// the original `vae.*` names for [`Layout::SingleFile`] (an error when the
/// config has no original naming that diffusers' renames map back).
pub fn vae_tensors(cfg: &vae::Config, layout: Layout) -> Result<Vec<(String, Vec<usize>)>> {
    validate_vae_config(cfg).map_err(invalid)?;
    let shapes = record(|vb| AutoencoderKLLTXVideo::new(cfg, vb).map(|_| ()), &BTreeSet::new())?;
    match layout {
        Layout::Diffusers => Ok(shapes),
        Layout::SingleFile => {
            let naming = VaeNaming::of_config(cfg);
            let mut seen = BTreeSet::new();
            shapes
                .into_iter()
                .map(|(n, s)| {
                    let o = original_vae_key(&n, naming);
                    if diffusers_vae_key(&o, naming).as_deref() != Some(n.as_str()) || !seen.insert(o.clone()) {
                        return Err(invalid(format!(
                            "this VAE config has no single-file (original) naming: diffusers' renames do \
                             not map any key back to `{n}`"
                        )));
                    }
                    Ok((o, s))
                })
                .collect()
        }
    }
}

/// Checks the list lengths the VAE's constructors index, so that a broken
/// `vae/config.json` is an error, not a panic.
pub fn validate_vae_config(c: &vae::Config) -> std::result::Result<(), String> {
    let bad = |m: String| Err(format!("VAE config: {m}"));
    for t in &c.down_block_types {
        if t != "LTXVideoDownBlock3D" && t != "LTXVideo095DownBlock3D" {
            return bad(format!("unknown down block type {t:?}"));
        }
    }
    for t in &c.downsample_type {
        if !["conv", "spatial", "temporal", "spatiotemporal"].contains(&t.as_str()) {
            return bad(format!("unknown downsample type {t:?}"));
        }
    }
    let is_095 = c.down_block_types.last().map(String::as_str) == Some("LTXVideo095DownBlock3D");
    let boc = c.block_out_channels.len();
    if boc < 1 + usize::from(is_095) {
        return bad(format!("{boc} block_out_channels are too few"));
    }
    let n = boc - usize::from(is_095);
    if c.layers_per_block.len() < n + 1 {
        return bad(format!("layers_per_block needs {} entries, has {}", n + 1, c.layers_per_block.len()));
    }
    if c.spatio_temporal_scaling.len() < n {
        return bad(format!("spatio_temporal_scaling needs {n} entries, has {}", c.spatio_temporal_scaling.len()));
    }
    let m = c.decoder_block_out_channels.len();
    if m == 0 {
        return bad("decoder_block_out_channels is empty".into());
    }
    for (what, len, need) in [
        ("decoder_layers_per_block", c.decoder_layers_per_block.len(), m + 1),
        ("decoder_inject_noise", c.decoder_inject_noise.len(), m + 1),
        ("decoder_spatio_temporal_scaling", c.decoder_spatio_temporal_scaling.len(), m),
        ("upsample_residual", c.upsample_residual.len(), m),
        ("upsample_factor", c.upsample_factor.len(), m),
    ] {
        if len < need {
            return bad(format!("{what} needs {need} entries, has {len}"));
        }
    }
    let zero = c.block_out_channels.iter().chain(&c.decoder_block_out_channels).chain(&c.upsample_factor);
    if zero.chain([&c.latent_channels, &c.patch_size, &c.patch_size_t, &c.in_channels, &c.out_channels]).any(|&x| x == 0) {
        return bad("channel counts, patch sizes and upsample factors must be positive".into());
    }
    let layers = c.layers_per_block.iter().chain(&c.decoder_layers_per_block);
    let widths = c.block_out_channels.iter().chain(&c.decoder_block_out_channels);
    if layers.clone().any(|&n| n > MAX_LAYERS)
        || widths.chain([&c.latent_channels, &c.in_channels, &c.out_channels]).any(|&w| w > MAX_WIDTH)
        || c.upsample_factor.iter().chain([&c.patch_size, &c.patch_size_t]).any(|&p| p > MAX_PATCH)
    {
        return bad(format!(
            "implausible sizes (at most {MAX_LAYERS} layers a block, {MAX_WIDTH} channels, patches and upsample factors of {MAX_PATCH})"
        ));
    }
    Ok(())
}

/// A `VarBuilder` backend that records every tensor asked for (zeros of the
/// shape, broadcast: no memory); `present` answers `contains_tensor`.
type Shapes = Vec<(String, Vec<usize>)>;

struct Recorder {
    seen: Arc<Mutex<Shapes>>,
    present: BTreeSet<String>,
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.seen.lock().map_err(|_| candle_core::Error::Msg("recorder poisoned".into()))?.push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unchecked read of {name}")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.present.contains(name)
    }
}

/// The (name, shape) list a model constructor reads.
fn record(
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
    present: &BTreeSet<String>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let vb = VarBuilder::from_backend(
        Box::new(Recorder { seen: seen.clone(), present: present.clone() }),
        DType::F32,
        Device::Cpu,
    );
    build(vb).map_err(|e| invalid(e.to_string()))?;
    let v = seen.lock().map_err(|_| invalid("recorder poisoned"))?.clone();
    Ok(v)
}

// ------------------------------------------------------------------- headers

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
}

impl HeaderTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The header of a safetensors file (read without its data).
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HeaderTensor>,
    pub metadata: HashMap<String, String>,
}

/// Lower-case name of a stored dtype (`bf16`, `f32`, `f8_e4m3`).
pub fn dtype_name(d: safetensors::Dtype) -> String {
    format!("{d:?}").to_lowercase()
}

fn corrupt(path: &Path, reason: impl Into<String>) -> WeftError {
    WeftError::WeightsCorrupt { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads and checks the header of a safetensors file: valid JSON, every
/// tensor's byte range consistent with its shape and dtype, the ranges
/// contiguous and exactly filling the rest of the file (so that a truncated
/// file is reported here, naming the tensor cut off).
pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader> {
    parse_header(path).map(|(h, _)| h)
}

/// Where each tensor's bytes lie in a checked safetensors file: absolute
/// byte offset and length.
type DataSpans = HashMap<String, (u64, usize)>;

fn parse_header(path: &Path) -> Result<(SafetensorsHeader, DataSpans)> {
    let mut f = std::fs::File::open(path).map_err(|e| corrupt(path, format!("cannot open: {e}")))?;
    let len = f.metadata().map_err(|e| corrupt(path, format!("cannot stat: {e}")))?.len();
    if len < 8 {
        return Err(corrupt(path, format!("{len} bytes: too short for a safetensors file (truncated?)")));
    }
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8).map_err(|e| corrupt(path, format!("cannot read: {e}")))?;
    let n = u64::from_le_bytes(n8);
    if n > 100_000_000 {
        return Err(corrupt(path, format!("header length {n} is implausible: not a safetensors file")));
    }
    if 8 + n > len {
        return Err(corrupt(
            path,
            format!("the header needs {n} bytes but the file has {} after its length: truncated", len - 8),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(|e| corrupt(path, format!("cannot read the header: {e}")))?;
    let map: serde_json::Map<String, Value> =
        serde_json::from_slice(&buf).map_err(|e| corrupt(path, format!("the header is not valid JSON: {e}")))?;
    let mut tensors = BTreeMap::new();
    let mut metadata = HashMap::new();
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for (k, v) in map {
        if k == "__metadata__" {
            metadata = serde_json::from_value(v)
                .map_err(|e| corrupt(path, format!("__metadata__ is not a string map: {e}")))?;
            continue;
        }
        let info: safetensors::tensor::TensorInfo =
            serde_json::from_value(v).map_err(|e| corrupt(path, format!("tensor `{k}`: bad header entry: {e}")))?;
        let bits = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(info.dtype.bitsize()))
            .ok_or_else(|| corrupt(path, format!("tensor `{k}`: shape {:?} overflows", info.shape)))?;
        let (s, e) = info.data_offsets;
        if e < s || (e - s).checked_mul(8) != Some(bits) {
            return Err(corrupt(
                path,
                format!("tensor `{k}`: {} data bytes for shape {:?} in {}", e.saturating_sub(s), info.shape, dtype_name(info.dtype)),
            ));
        }
        spans.push((s, e, k.clone()));
        tensors.insert(k, HeaderTensor { dtype: info.dtype, shape: info.shape });
    }
    spans.sort();
    let mut at = 0usize;
    for (s, e, k) in &spans {
        if *s != at {
            return Err(corrupt(path, format!("tensor `{k}`: its data offsets overlap or leave a hole")));
        }
        at = *e;
    }
    let data = len - 8 - n;
    if at as u64 > data {
        let cut = spans.iter().find(|(_, e, _)| *e as u64 > data).map(|x| x.2.as_str()).unwrap_or("?");
        return Err(corrupt(
            path,
            format!("truncated: the header describes {at} bytes of tensor data, the file holds {data} (tensor `{cut}` is cut off)"),
        ));
    }
    if (at as u64) < data {
        return Err(corrupt(path, format!("{} stray bytes after the last tensor", data - at as u64)));
    }
    let base = 8 + n;
    let offsets = spans.into_iter().map(|(s, e, k)| (k, (base + s as u64, e - s))).collect();
    Ok((SafetensorsHeader { path: path.to_path_buf(), tensors, metadata }, offsets))
}

// ----------------------------------------------------------------- inspection

/// What one component's files hold.
#[derive(Debug, Clone)]
pub struct ComponentSummary {
    pub files: Vec<PathBuf>,
    pub tensors: usize,
    pub parameters: usize,
    /// Stored dtypes, sorted (`["bf16"]`).
    pub stored_dtypes: Vec<String>,
}

impl ComponentSummary {
    fn line(&self) -> String {
        format!(
            "{} parameters ({} tensors), stored {}, {} file{}",
            format_count(self.parameters),
            self.tensors,
            self.stored_dtypes.join("+"),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        )
    }
}

/// `1.9 B`, `12.3 M`, `4.5 k`, `17`.
pub fn format_count(n: usize) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.1} B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} k", f / 1e3)
    } else {
        n.to_string()
    }
}

/// Where the T5 encoder and tokenizer are.
#[derive(Debug, Clone)]
pub enum TextStatus {
    Present { encoder_dir: PathBuf, tokenizer_dir: PathBuf, config: Box<T5Config>, summary: ComponentSummary },
    /// Why there is none.
    Missing(String),
}

/// A checked component: its files and diffusers name -> file key.
#[derive(Debug, Clone)]
struct Checked {
    summary: ComponentSummary,
    map: HashMap<String, String>,
}

/// Everything [`inspect`] learns from configs and headers, without reading
/// any weights.
#[derive(Debug, Clone)]
pub struct LtxInspection {
    pub source: PathBuf,
    pub layout: Layout,
    pub version: LtxVersion,
    pub transformer_config: tr::Config,
    pub vae_config: vae::Config,
    pub scheduler: SchedulerConfig,
    /// The pipeline class (`model_index.json`), for a snapshot.
    pub pipeline: Option<String>,
    pub transformer: ComponentSummary,
    pub vae: ComponentSummary,
    pub text: TextStatus,
    transformer_map: HashMap<String, String>,
    vae_map: HashMap<String, String>,
}

impl LtxInspection {
    /// Human-readable report, one line per component.
    pub fn lines(&self) -> Vec<String> {
        let t = &self.transformer_config;
        let mut out = vec![
            format!(
                "LTX-Video {} ({}), {}: {}",
                self.version,
                self.version.releases(),
                self.layout.name(),
                self.source.display()
            ),
            format!(
                "transformer: {} ({} blocks, width {}, text width {})",
                self.transformer.line(),
                t.num_layers,
                t.inner_dim(),
                t.caption_channels
            ),
            format!(
                "vae: {} ({} layout, {}x spatial / {}x temporal, timestep-conditioned: {})",
                self.vae.line(),
                VaeNaming::of_config(&self.vae_config).name(),
                self.vae_config.spatial_compression(),
                self.vae_config.temporal_compression(),
                if self.vae_config.timestep_conditioning { "yes" } else { "no" }
            ),
        ];
        out.push(match &self.text {
            TextStatus::Present { encoder_dir, tokenizer_dir, summary, .. } => format!(
                "text encoder: {} ({}, tokenizer {})",
                summary.line(),
                encoder_dir.display(),
                tokenizer_dir.display()
            ),
            TextStatus::Missing(why) => format!("text encoder: missing ({why})"),
        });
        let s = &self.scheduler;
        out.push(if s.use_dynamic_shifting {
            format!(
                "scheduler: flow-matching Euler, dynamic shift {}..{} over {}..{} tokens{}",
                s.base_shift.unwrap_or(0.5),
                s.max_shift.unwrap_or(1.15),
                s.base_image_seq_len,
                s.max_image_seq_len,
                s.shift_terminal.map(|t| format!(", terminal {t}")).unwrap_or_default()
            )
        } else {
            format!("scheduler: flow-matching Euler, shift {}", s.shift)
        });
        out
    }

    pub fn has_text_encoder(&self) -> bool {
        matches!(self.text, TextStatus::Present { .. })
    }
}

/// Whether `path` looks like an LTX-Video model: a directory with
/// `model_index.json`, or a `.safetensors` file.
pub fn is_ltx_path(path: &Path) -> bool {
    if path.is_dir() {
        path.join("model_index.json").is_file()
    } else {
        path.extension().is_some_and(|e| e == "safetensors")
    }
}

/// Reads and checks an LTX-Video snapshot directory or single file (configs
/// and safetensors headers only; fast on any size). `text_encoder`: a folder
/// holding `text_encoder/` + `tokenizer/`, or a T5 folder itself (config.json,
/// safetensors weights, tokenizer.json or spiece.model); it replaces a
/// snapshot's own.
pub fn inspect(path: &Path, text_encoder: Option<&Path>) -> Result<LtxInspection> {
    if path.is_dir() {
        inspect_snapshot(path, text_encoder)
    } else if path.is_file() {
        inspect_single_file(path, text_encoder)
    } else {
        Err(WeftError::ModelDir { path: path.to_path_buf(), reason: "does not exist".into() })
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?;
    serde_json::from_str(&text).map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: format!("not valid JSON: {e}") })
}

fn parse_config<T: serde::de::DeserializeOwned>(v: Value, path: &Path) -> Result<T> {
    serde_json::from_value(v).map_err(|e| WeftError::Config { path: path.to_path_buf(), reason: e.to_string() })
}

const LTX_PIPELINES: &[&str] =
    &["LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline", "LTXI2VLongMultiPromptPipeline"];

fn check_class(v: &Value, want: &str, path: &Path) -> Result<()> {
    match v.get("_class_name").and_then(Value::as_str) {
        None => Ok(()),
        Some(c) if c == want => Ok(()),
        Some(c) => Err(WeftError::Config { path: path.to_path_buf(), reason: format!("is a {c}, weft expects {want}") }),
    }
}

/// The safetensors files of a diffusers component folder: `{stem}.safetensors`,
/// or the shards of `{stem}.safetensors.index.json` (returned with its weight map).
/// A shard index: its path and tensor -> file name.
type ShardIndex = Option<(PathBuf, BTreeMap<String, String>)>;

fn component_files(dir: &Path, stem: &str) -> Result<(Vec<PathBuf>, ShardIndex)> {
    let index = dir.join(format!("{stem}.safetensors.index.json"));
    if index.is_file() {
        let v = read_json(&index)?;
        let Some(map) = v.get("weight_map").and_then(Value::as_object) else {
            return Err(WeftError::Config { path: index, reason: "no weight_map".into() });
        };
        let mut wm = BTreeMap::new();
        for (k, f) in map {
            let Some(f) = f.as_str() else {
                return Err(WeftError::Config { path: index, reason: format!("weight_map[`{k}`] is not a file name") });
            };
            wm.insert(k.clone(), f.to_string());
        }
        let files: BTreeSet<&String> = wm.values().collect();
        let mut paths = Vec::new();
        for f in files {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(WeftError::ModelDir {
                    path: dir.to_path_buf(),
                    reason: format!("shard {f} (listed in {}) is missing", index.display()),
                });
            }
            paths.push(p);
        }
        return Ok((paths, Some((index, wm))));
    }
    let single = dir.join(format!("{stem}.safetensors"));
    if single.is_file() {
        return Ok((vec![single], None));
    }
    let others: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors"))
                .collect()
        })
        .unwrap_or_default();
    Err(WeftError::ModelDir {
        path: dir.to_path_buf(),
        reason: format!(
            "no {stem}.safetensors or {stem}.safetensors.index.json{}",
            if others.is_empty() { String::new() } else { format!(" (found only {})", others.join(", ")) }
        ),
    })
}

/// One tensor found in a component's files.
#[derive(Debug, Clone)]
struct Found {
    key: String,
    tensor: HeaderTensor,
    file: PathBuf,
}

/// All tensors of a set of files, by file key (duplicates are errors).
fn gather(files: &[PathBuf]) -> Result<(BTreeMap<String, Found>, Vec<SafetensorsHeader>)> {
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    let mut headers = Vec::new();
    for f in files {
        let h = read_safetensors_header(f)?;
        for (k, t) in &h.tensors {
            if let Some(prev) = out.get(k) {
                return Err(corrupt(f, format!("tensor `{k}` is also in {}", prev.file.display())));
            }
            out.insert(k.clone(), Found { key: k.clone(), tensor: t.clone(), file: f.clone() });
        }
        headers.push(h);
    }
    Ok((out, headers))
}

fn check_index(index: &ShardIndex, found: &BTreeMap<String, Found>) -> Result<()> {
    let Some((path, wm)) = index else { return Ok(()) };
    for (k, f) in wm {
        match found.get(k) {
            None => return Err(corrupt(path, format!("lists tensor `{k}` in {f}, which does not hold it"))),
            Some(x) if x.file.file_name().is_none_or(|n| n.to_string_lossy() != *f) => {
                return Err(corrupt(path, format!("lists tensor `{k}` in {f}, but it is in {}", x.file.display())));
            }
            _ => {}
        }
    }
    if let Some((k, x)) = found.iter().find(|(k, _)| !wm.contains_key(*k)) {
        return Err(corrupt(&x.file, format!("holds tensor `{k}`, which {} does not list", path.display())));
    }
    Ok(())
}

fn is_float(d: safetensors::Dtype) -> bool {
    matches!(d, safetensors::Dtype::F16 | safetensors::Dtype::BF16 | safetensors::Dtype::F32 | safetensors::Dtype::F64)
}

/// Compares the tensors found (by diffusers name) with the ones a config
/// needs: every one present, none unexpected, shapes, float storage.
/// `original` names a missing tensor as the file would.
fn check_component(
    what: &str,
    version: LtxVersion,
    expected: &[(String, Vec<usize>)],
    found: &BTreeMap<String, Found>,
    location: &Path,
    original: &dyn Fn(&str) -> String,
    files: Vec<PathBuf>,
) -> Result<Checked> {
    for (name, _) in expected {
        if !found.contains_key(name) {
            let key = original(name);
            let also = if key != *name { format!(" (diffusers `{name}`)") } else { String::new() };
            return Err(corrupt(
                location,
                format!("the {what} tensor `{key}`{also} is missing (LTX-Video {version} needs it)"),
            ));
        }
    }
    let names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some((_, x)) = found.iter().find(|(n, _)| !names.contains(n.as_str())) {
        return Err(corrupt(
            &x.file,
            format!("unexpected tensor `{}` (not part of the LTX-Video {version} {what})", x.key),
        ));
    }
    let mut dtypes = BTreeSet::new();
    let mut parameters = 0usize;
    let mut map = HashMap::with_capacity(expected.len());
    for (name, shape) in expected {
        let x = &found[name];
        if x.tensor.shape != *shape {
            return Err(corrupt(
                &x.file,
                format!(
                    "the {what} tensor `{}` has shape {:?}, LTX-Video {version} needs {:?}",
                    x.key, x.tensor.shape, shape
                ),
            ));
        }
        if !is_float(x.tensor.dtype) {
            return Err(corrupt(
                &x.file,
                format!(
                    "the {what} tensor `{}` is stored as {}; weft reads f32, f16 and bf16 weights",
                    x.key,
                    dtype_name(x.tensor.dtype)
                ),
            ));
        }
        dtypes.insert(dtype_name(x.tensor.dtype));
        parameters += x.tensor.numel();
        map.insert(name.clone(), x.key.clone());
    }
    Ok(Checked {
        summary: ComponentSummary {
            files,
            tensors: expected.len(),
            parameters,
            stored_dtypes: dtypes.into_iter().collect(),
        },
        map,
    })
}

/// A diffusers component folder (`transformer/`, `vae/`): its config and checked tensors.
fn diffusers_component(dir: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, Found>)> {
    if !dir.is_dir() {
        return Err(WeftError::ModelDir {
            path: dir.parent().unwrap_or(dir).to_path_buf(),
            reason: format!("missing {}/ folder", dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()),
        });
    }
    let (files, index) = component_files(dir, "diffusion_pytorch_model")?;
    let (found, _) = gather(&files)?;
    check_index(&index, &found)?;
    Ok((files, found))
}

fn inspect_snapshot(root: &Path, text_encoder: Option<&Path>) -> Result<LtxInspection> {
    let mi_path = root.join("model_index.json");
    if !mi_path.is_file() {
        return Err(WeftError::ModelDir {
            path: root.to_path_buf(),
            reason: "no model_index.json (not a diffusers snapshot)".into(),
        });
    }
    let mi = read_json(&mi_path)?;
    let class = mi.get("_class_name").and_then(Value::as_str).unwrap_or("").to_string();
    if !LTX_PIPELINES.contains(&class.as_str()) {
        let reason = if class.starts_with("LTX2") {
            format!("is an {class} (LTX-2), which weft does not support (LTX-Video 0.9.x only)")
        } else if class == "LTXLatentUpsamplePipeline" {
            "is the LTX latent upsampler pipeline, not a video generator".to_string()
        } else if class.is_empty() {
            "has no _class_name".to_string()
        } else {
            format!("is a {class}, not an LTX-Video pipeline ({})", LTX_PIPELINES.join(", "))
        };
        return Err(WeftError::Config { path: mi_path, reason });
    }

    let tdir = root.join("transformer");
    let tcfg_path = tdir.join("config.json");
    let tv = read_json(&tcfg_path)?;
    check_class(&tv, "LTXVideoTransformer3DModel", &tcfg_path)?;
    let tcfg: tr::Config = parse_config(tv, &tcfg_path)?;
    let vdir = root.join("vae");
    let vcfg_path = vdir.join("config.json");
    let vv = read_json(&vcfg_path)?;
    check_class(&vv, "AutoencoderKLLTXVideo", &vcfg_path)?;
    let vcfg: vae::Config = parse_config(vv, &vcfg_path)?;
    validate_vae_config(&vcfg).map_err(|reason| WeftError::Config { path: vcfg_path.clone(), reason })?;
    let version = LtxVersion::of_configs(&tcfg, &vcfg);

    let s_path = root.join("scheduler").join("scheduler_config.json");
    if !s_path.is_file() {
        return Err(WeftError::ModelDir { path: root.to_path_buf(), reason: "missing scheduler/scheduler_config.json".into() });
    }
    let scheduler = SchedulerConfig::from_path(&s_path)
        .map_err(|e| WeftError::Config { path: s_path.clone(), reason: e.to_string() })?;

    let (tfiles, tfound) = diffusers_component(&tdir)?;
    let texp = transformer_tensors(&tcfg, Layout::Diffusers)?;
    let t = check_component("transformer", version, &texp, &tfound, &tdir, &|n: &str| n.to_string(), tfiles)?;
    let (vfiles, vfound) = diffusers_component(&vdir)?;
    let vexp = vae_tensors(&vcfg, Layout::Diffusers)?;
    let v = check_component("VAE", version, &vexp, &vfound, &vdir, &|n: &str| n.to_string(), vfiles)?;

    let text = match text_encoder {
        Some(dir) => text_status(dir)?,
        None if root.join("text_encoder").is_dir() || root.join("tokenizer").is_dir() => text_status(root)?,
        None => TextStatus::Missing(
            "the snapshot has no text_encoder/ and tokenizer/; pass --text-encoder DIR".into(),
        ),
    };
    Ok(LtxInspection {
        source: root.to_path_buf(),
        layout: Layout::Diffusers,
        version,
        transformer_config: tcfg,
        vae_config: vcfg,
        scheduler,
        pipeline: Some(class),
        transformer: t.summary,
        vae: v.summary,
        text,
        transformer_map: t.map,
        vae_map: v.map,
    })
}

/// Marker keys of an LTX-Video single file (`CHECKPOINT_KEY_NAMES["ltx-video"]`).
const LTX_MARKERS: &[&str] = &[
    "model.diffusion_model.patchify_proj.weight",
    "model.diffusion_model.transformer_blocks.27.scale_shift_table",
    "patchify_proj.weight",
    "transformer_blocks.27.scale_shift_table",
    "vae.decoder.last_scale_shift_table",
    "vae.decoder.up_blocks.9.res_blocks.0.conv1.conv.weight",
];

/// The version a single file's keys and shapes give, as
/// `infer_diffusers_model_type` decides it.
pub fn detect_single_file_version(tensors: &BTreeMap<String, HeaderTensor>) -> Option<LtxVersion> {
    if !LTX_MARKERS.iter().any(|k| tensors.contains_key(*k)) {
        return None;
    }
    let has_vae = tensors.contains_key("vae.encoder.conv_in.conv.bias");
    Some(if tensors.keys().any(|k| k.ends_with("transformer_blocks.47.scale_shift_table")) {
        LtxVersion::V0_9_7
    } else if has_vae && tensors.get("vae.encoder.conv_out.conv.weight").and_then(|t| t.shape.get(1)) == Some(&2048) {
        LtxVersion::V0_9_5
    } else if tensors.contains_key("vae.decoder.last_time_embedder.timestep_embedder.linear_1.weight") {
        LtxVersion::V0_9_1
    } else {
        LtxVersion::V0_9_0
    })
}

const TRANSFORMER_FIELDS: &[&str] = &[
    "in_channels",
    "out_channels",
    "patch_size",
    "patch_size_t",
    "num_attention_heads",
    "attention_head_dim",
    "cross_attention_dim",
    "num_layers",
    "activation_fn",
    "qk_norm",
    "norm_elementwise_affine",
    "norm_eps",
    "caption_channels",
    "attention_bias",
    "attention_out_bias",
];

fn transformer_json(c: &tr::Config) -> Value {
    json!({
        "in_channels": c.in_channels, "out_channels": c.out_channels, "patch_size": c.patch_size,
        "patch_size_t": c.patch_size_t, "num_attention_heads": c.num_attention_heads,
        "attention_head_dim": c.attention_head_dim, "cross_attention_dim": c.cross_attention_dim,
        "num_layers": c.num_layers, "activation_fn": c.activation_fn, "qk_norm": c.qk_norm,
        "norm_elementwise_affine": c.norm_elementwise_affine, "norm_eps": c.norm_eps,
        "caption_channels": c.caption_channels, "attention_bias": c.attention_bias,
        "attention_out_bias": c.attention_out_bias,
    })
}

fn inspect_single_file(path: &Path, text_encoder: Option<&Path>) -> Result<LtxInspection> {
    let header = read_safetensors_header(path)?;
    let Some(detected) = detect_single_file_version(&header.tensors) else {
        let reason = if header.tensors.keys().any(|k| k.starts_with("audio_vae.") || k.contains("av_ca_")) {
            "is an LTX-2 checkpoint, which weft does not support (LTX-Video 0.9.x only)".to_string()
        } else {
            format!("is not an LTX-Video checkpoint (none of {} in it)", LTX_MARKERS[..3].join(", "))
        };
        return Err(corrupt(path, reason));
    };

    // Configs: the metadata's, where it has them, else the detected version's.
    let meta: Option<Value> = match header.metadata.get("config") {
        None => None,
        Some(s) => Some(serde_json::from_str(s).map_err(|e| WeftError::Config {
            path: path.to_path_buf(),
            reason: format!("safetensors metadata `config` is not JSON: {e}"),
        })?),
    };
    let section = |name: &str| meta.as_ref().and_then(|m| m.get(name)).filter(|v| v.is_object()).cloned();
    let mut tcfg = detected.transformer_config();
    if let Some(Value::Object(m)) = section("transformer") {
        let mut base = transformer_json(&tcfg);
        for f in TRANSFORMER_FIELDS {
            if let Some(v) = m.get(*f) {
                // Lightricks' `rms_norm` q/k norm is diffusers' `rms_norm_across_heads`.
                let v = if *f == "qk_norm" && v.as_str() == Some("rms_norm") { json!("rms_norm_across_heads") } else { v.clone() };
                base[*f] = v;
            }
        }
        tcfg = parse_config(base, path)?;
    }
    let vcfg = match section("vae") {
        Some(v) if v.get("block_out_channels").is_some() => parse_config::<vae::Config>(v, path)?,
        // The version's config, as diffusers' single-file loader uses (0.9.7's VAE is 0.9.5's).
        _ => detected.vae_config(),
    };
    validate_vae_config(&vcfg).map_err(|reason| WeftError::Config { path: path.to_path_buf(), reason })?;
    let version = LtxVersion::of_configs(&tcfg, &vcfg);
    let scheduler = match section("scheduler") {
        Some(s) if s.get("_class_name").and_then(Value::as_str) == Some("FlowMatchEulerDiscreteScheduler") => {
            SchedulerConfig::from_json(&s.to_string()).map_err(|e| WeftError::Config {
                path: path.to_path_buf(),
                reason: format!("metadata scheduler: {e}"),
            })?
        }
        _ => version.scheduler_config(),
    };

    // Split and rename as diffusers does.
    let naming = VaeNaming::of_config(&vcfg);
    let mut tfound: BTreeMap<String, Found> = BTreeMap::new();
    let mut vfound: BTreeMap<String, Found> = BTreeMap::new();
    let mut has_vae = false;
    for (k, t) in &header.tensors {
        let (d, into) = if k.contains("vae.") {
            has_vae = true;
            match diffusers_vae_key(k, naming) {
                Some(d) => (d, &mut vfound),
                None => continue, // per-channel statistics diffusers drops
            }
        } else if !k.contains("vae") {
            (diffusers_transformer_key(k), &mut tfound)
        } else {
            return Err(corrupt(path, format!("unexpected tensor `{k}` (neither transformer nor `vae.*`)")));
        };
        let found = Found { key: k.clone(), tensor: t.clone(), file: path.to_path_buf() };
        if let Some(prev) = into.insert(d.clone(), found) {
            return Err(corrupt(path, format!("tensors `{}` and `{k}` both become diffusers' `{d}`", prev.key)));
        }
    }
    if !has_vae {
        return Err(corrupt(path, "holds no VAE (`vae.*` tensors); weft needs the VAE in the same file"));
    }
    let prefixed = header.tensors.keys().any(|k| k.starts_with(TRANSFORMER_PREFIX));
    let files = vec![path.to_path_buf()];
    let texp = transformer_tensors(&tcfg, Layout::Diffusers)?;
    let orig_t = |n: &str| {
        let o = original_transformer_key(n);
        if prefixed { o } else { o[TRANSFORMER_PREFIX.len()..].to_string() }
    };
    let t = check_component("transformer", version, &texp, &tfound, path, &orig_t, files.clone())?;
    let vexp = vae_tensors(&vcfg, Layout::Diffusers)?;
    let v = check_component("VAE", version, &vexp, &vfound, path, &|n: &str| original_vae_key(n, naming), files)?;

    let text = match text_encoder {
        Some(dir) => text_status(dir)?,
        None => TextStatus::Missing(
            "a single-file checkpoint holds no T5 encoder; pass --text-encoder DIR (a folder with text_encoder/ \
             and tokenizer/, e.g. an LTX-Video diffusers snapshot, or a T5 folder)"
                .into(),
        ),
    };
    Ok(LtxInspection {
        source: path.to_path_buf(),
        layout: Layout::SingleFile,
        version,
        transformer_config: tcfg,
        vae_config: vcfg,
        scheduler,
        pipeline: None,
        transformer: t.summary,
        vae: v.summary,
        text,
        transformer_map: t.map,
        vae_map: v.map,
    })
}

/// Resolves and checks a text-encoder location: `dir/text_encoder` +
/// `dir/tokenizer`, or `dir` itself as a T5 folder. Errors name what is
/// missing or broken.
fn text_status(dir: &Path) -> Result<TextStatus> {
    let (enc, tok) = if dir.join("text_encoder").is_dir() || dir.join("tokenizer").is_dir() {
        (dir.join("text_encoder"), dir.join("tokenizer"))
    } else if dir.join("config.json").is_file() {
        (dir.to_path_buf(), dir.to_path_buf())
    } else {
        return Err(WeftError::ModelDir {
            path: dir.to_path_buf(),
            reason: if dir.is_dir() {
                "holds neither text_encoder/ + tokenizer/ nor a T5 encoder (config.json + safetensors)".into()
            } else {
                "text encoder folder does not exist".into()
            },
        });
    };
    for (d, what) in [(&enc, "text_encoder/ folder (the T5 encoder)"), (&tok, "tokenizer/ folder (the T5 tokenizer)")] {
        if !d.is_dir() {
            return Err(WeftError::ModelDir { path: dir.to_path_buf(), reason: format!("missing {what}") });
        }
    }
    if !tok.join("tokenizer.json").is_file() && !tok.join("spiece.model").is_file() {
        return Err(WeftError::ModelDir {
            path: tok.clone(),
            reason: "no tokenizer.json or spiece.model (the T5 tokenizer)".into(),
        });
    }
    let cfg_path = enc.join("config.json");
    let config: T5Config = parse_config(read_json(&cfg_path)?, &cfg_path)?;
    let index = enc.join("model.safetensors.index.json");
    let (files, index) = if index.is_file() || enc.join("model.safetensors").is_file() {
        component_files(&enc, "model")?
    } else {
        let files = super::text::safetensors_files(&enc)
            .map_err(|e| WeftError::ModelDir { path: enc.clone(), reason: e.to_string() })?;
        (files, None)
    };
    let (found, _) = gather(&files)?;
    check_index(&index, &found)?;
    // What candle's T5 encoder reads: every one present and of its shape;
    // other tensors (a decoder, tied copies) are ignored.
    let present: BTreeSet<String> = found.keys().cloned().collect();
    let wanted = record(|vb| T5EncoderModel::load(vb, &config).map(|_| ()), &present)?;
    let mut dtypes = BTreeSet::new();
    let mut parameters = 0;
    for (name, shape) in &wanted {
        let Some(x) = found.get(name) else {
            return Err(corrupt(&enc, format!("the T5 encoder tensor `{name}` is missing")));
        };
        if x.tensor.shape != *shape {
            return Err(corrupt(
                &x.file,
                format!("the T5 encoder tensor `{name}` has shape {:?}, its config needs {shape:?}", x.tensor.shape),
            ));
        }
        if !is_float(x.tensor.dtype) {
            return Err(corrupt(&x.file, format!("the T5 tensor `{name}` is stored as {}", dtype_name(x.tensor.dtype))));
        }
        dtypes.insert(dtype_name(x.tensor.dtype));
        parameters += x.tensor.numel();
    }
    Ok(TextStatus::Present {
        encoder_dir: enc,
        tokenizer_dir: tok,
        config: Box::new(config),
        summary: ComponentSummary {
            files,
            tensors: wanted.len(),
            parameters,
            stored_dtypes: dtypes.into_iter().collect(),
        },
    })
}

// ------------------------------------------------------------------- loading

/// A `VarBuilder` backend over safetensors files that serves diffusers'
/// names from the files' keys. Each tensor is read with positioned reads
/// straight into its own buffer, not through a memory map: a mapped file's
/// pages count as the process's resident memory for as long as the map lives,
/// which doubled the peak while loading (the mapped copy plus the loaded one).
struct Renamed {
    files: Vec<std::fs::File>,
    /// Diffusers name -> (file, stored dtype, shape, offset, length).
    tensors: HashMap<String, (usize, safetensors::Dtype, Vec<usize>, u64, usize)>,
    /// Where tensors that are converted after reading (f32 -> bf16 for a
    /// bf16 model, bf16 -> f32 for the VAE...) are read: one buffer, reused,
    /// so that only the converted copy takes fresh pages. Fresh memory was
    /// most of the load time on the benchmark machines (the kernel zeroes
    /// every new page, about 1.3 GB/s there), and a read-then-convert paid
    /// for it twice.
    scratch: std::sync::Mutex<Vec<u64>>,
}

/// Reads `dst.len()` bytes at `offset` into `dst`. Large reads go in 8 MiB
/// pieces on all threads.
fn read_at(f: &std::fs::File, offset: u64, dst: &mut [u8]) -> std::io::Result<()> {
    use rayon::prelude::*;
    use std::os::fd::AsRawFd;
    const PIECE: usize = 8 << 20;
    let bytes = dst.len();
    let base = dst.as_mut_ptr() as usize;
    let fd = f.as_raw_fd();
    let read = |i: usize| -> std::io::Result<()> {
        let mut at = i * PIECE;
        let end = (at + PIECE).min(bytes);
        while at < end {
            // SAFETY: [at, end) lies inside `dst` and pieces are disjoint;
            // pread only writes it.
            let got = unsafe {
                libc::pread(fd, (base + at) as *mut libc::c_void, end - at, (offset + at as u64) as libc::off_t)
            };
            match got {
                0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                g if g < 0 => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                g => at += g as usize,
            }
        }
        Ok(())
    };
    (0..bytes.div_ceil(PIECE)).into_par_iter().try_for_each(read)
}

/// Reads `len` bytes at `offset` into a vector of `T` (little-endian, as
/// safetensors stores them), into memory that is not zeroed first and is
/// backed by huge pages where the kernel allows it: a single-threaded read
/// into fresh 4 KiB pages was most of the load time (about 1 GB/s).
fn read_typed<T: candle_core::WithDType>(f: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    let n = len / size;
    let bytes = n * size;
    let mut v: Vec<T> = Vec::with_capacity(n);
    crate::runtime::advise_huge(v.as_mut_ptr().cast::<u8>(), bytes);
    // SAFETY: the capacity holds `bytes` bytes; read_at writes all of them
    // before set_len, and every bit pattern is a valid value of the float
    // types read here.
    read_at(f, offset, unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), bytes) })?;
    unsafe { v.set_len(n) };
    Ok(v)
}

/// `v` (shape `shape`) as a CPU tensor in `dtype`, converted on all threads,
/// rounding as candle's `to_dtype` rounds (through f32: `half`'s `from_f64`
/// rounds some halfway-and-above values down).
fn convert<T: candle_core::WithDType>(v: Vec<T>, shape: &[usize], dtype: DType) -> candle_core::Result<Tensor> {
    // f64 sources take candle's path: through f32 they would round twice.
    if T::DTYPE == dtype || T::DTYPE == DType::F64 || v.len() < (1 << 20) {
        return Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype);
    }
    convert_slice(&v, shape, dtype)
}

/// Whether [`convert`] converts `n` values of `stored` on all threads (then
/// the source can be a borrowed, reused buffer: [`convert_slice`]).
fn converts_in_parallel(stored: DType, dtype: DType, n: usize) -> bool {
    stored != dtype && stored != DType::F64 && n >= (1 << 20)
}

/// [`convert`]'s parallel path, from a borrowed slice.
fn convert_slice<T: candle_core::WithDType>(v: &[T], shape: &[usize], dtype: DType) -> candle_core::Result<Tensor> {
    fn par<T: candle_core::WithDType, U: candle_core::WithDType>(
        v: &[T],
        shape: &[usize],
        f: impl Fn(f32) -> U + Sync,
    ) -> candle_core::Result<Tensor> {
        use rayon::prelude::*;
        const PIECE: usize = 1 << 18;
        let mut out = vec![U::from_f64(0.0); v.len()];
        out.par_chunks_mut(PIECE).zip(v.par_chunks(PIECE)).for_each(|(o, i)| {
            for (o, i) in o.iter_mut().zip(i) {
                // Exact: every f32, f16 and bf16 value is an f32.
                *o = f(i.to_f64() as f32);
            }
        });
        Tensor::from_vec(out, shape, &Device::Cpu)
    }
    match dtype {
        DType::F32 => par(v, shape, |x| x),
        DType::BF16 => par(v, shape, |x| half::bf16::from_bits(super::kernels::f32_to_bf16(x))),
        DType::F16 => par(v, shape, half::f16::from_f32),
        _ => Tensor::from_slice(v, shape, &Device::Cpu)?.to_dtype(dtype),
    }
}

/// Reads `len` bytes at `offset` into the reused `scratch` and converts
/// them (`T` as stored) to a new tensor in `dtype`.
fn read_converted<T: candle_core::WithDType>(
    f: &std::fs::File,
    scratch: &std::sync::Mutex<Vec<u64>>,
    offset: u64,
    len: usize,
    shape: &[usize],
    dtype: DType,
) -> candle_core::Result<Result<Tensor, std::io::Error>> {
    let size = std::mem::size_of::<T>();
    let n = len / size;
    let mut buf = scratch.lock().unwrap_or_else(|p| p.into_inner());
    let words = (n * size).div_ceil(8);
    if buf.len() < words {
        // Grown (rarely: to the largest converted tensor) and kept.
        *buf = vec![0u64; words];
    }
    // SAFETY: u64 storage is aligned for T (size <= 8) and holds n * size
    // bytes; every bit pattern is a valid float of the types read here.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n * size) };
    if let Err(e) = read_at(f, offset, bytes) {
        return Ok(Err(e));
    }
    let vals = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<T>(), n) };
    convert_slice(vals, shape, dtype).map(Ok)
}

impl SimpleBackend for Renamed {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("tensor `{name}`: shape {:?}, expected {:?}", t.shape(), s)
        }
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        use safetensors::Dtype as S;
        let (fi, stored, shape, offset, len) =
            self.tensors.get(name).ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))?;
        let f = &self.files[*fi];
        let io = |e: std::io::Error| candle_core::Error::Msg(format!("tensor `{name}`: cannot read: {e}"));
        let read = super::profile::scope(if *len >= 8 << 20 { "load.read.big" } else { "load.read.small" });
        let n = shape.iter().product::<usize>();
        let scratch = |stored: DType| converts_in_parallel(stored, dtype, n);
        let t = match stored {
            S::F32 if scratch(DType::F32) => read_converted::<f32>(f, &self.scratch, *offset, *len, shape, dtype)?.map_err(io)?,
            S::F16 if scratch(DType::F16) => read_converted::<half::f16>(f, &self.scratch, *offset, *len, shape, dtype)?.map_err(io)?,
            S::BF16 if scratch(DType::BF16) => read_converted::<half::bf16>(f, &self.scratch, *offset, *len, shape, dtype)?.map_err(io)?,
            S::F32 => convert(read_typed::<f32>(f, *offset, *len).map_err(io)?, shape, dtype)?,
            S::F16 => convert(read_typed::<half::f16>(f, *offset, *len).map_err(io)?, shape, dtype)?,
            S::BF16 => convert(read_typed::<half::bf16>(f, *offset, *len).map_err(io)?, shape, dtype)?,
            S::F64 => convert(read_typed::<f64>(f, *offset, *len).map_err(io)?, shape, dtype)?,
            other => candle_core::bail!("tensor `{name}`: stored as {}, not a float type weft reads", dtype_name(*other)),
        };
        drop(read);
        // Converted on the CPU before moving, so a GPU never holds the f32 copy.
        t.to_device(dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A `VarBuilder` over safetensors files, their keys as the names, each
/// tensor read on request with positioned reads (no memory map: the peak is
/// the model's own copy, not that plus the mapped file).
pub fn read_var_builder<'a>(files: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'a>> {
    var_builder(files, None, dtype, device)
}

/// [`read_var_builder`] serving `map`'s names (diffusers' names -> the files'
/// keys; `None`: the keys themselves).
fn var_builder<'a>(files: &[PathBuf], map: Option<&HashMap<String, String>>, dtype: DType, device: &Device) -> Result<VarBuilder<'a>> {
    let mut opened = Vec::with_capacity(files.len());
    let mut stored = HashMap::new();
    for (i, path) in files.iter().enumerate() {
        let (header, spans) = parse_header(path)?;
        opened.push(std::fs::File::open(path).map_err(|e| corrupt(path, format!("cannot open: {e}")))?);
        for (key, t) in header.tensors {
            let (offset, len) = spans[&key];
            stored.insert(key, (i, t.dtype, t.shape, offset, len));
        }
    }
    let tensors = match map {
        Some(map) => map.iter().filter_map(|(name, key)| stored.get(key).map(|v| (name.clone(), v.clone()))).collect(),
        None => stored,
    };
    Ok(VarBuilder::from_backend(Box::new(Renamed { files: opened, tensors, scratch: Default::default() }), dtype, device.clone()))
}

/// The sampling recipe a checkpoint was trained for: `distilled` when its
/// file or folder name says so, as Lightricks names them
/// (`ltxv-2b-0.9.8-distilled.safetensors`, `LTX-Video-0.9.8-13B-distilled/`),
/// or when a single file's `config` metadata lists the fixed
/// `allowed_inference_steps` of a distilled model; `dev` otherwise. The
/// diffusers configs carry no such flag.
pub fn detect_preset(path: &Path) -> LtxPreset {
    let name = std::fs::canonicalize(path).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()));
    let named = name.or_else(|| path.file_name().map(|n| n.to_string_lossy().to_lowercase())).is_some_and(|n| n.contains("distilled"));
    if named {
        return LtxPreset::Distilled;
    }
    fn lists_steps(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                (k == "allowed_inference_steps" && v.as_array().is_some_and(|a| !a.is_empty())) || lists_steps(v)
            }),
            Value::Array(a) => a.iter().any(lists_steps),
            _ => false,
        }
    }
    if path.is_file()
        && let Ok(h) = read_safetensors_header(path)
        && let Some(cfg) = h.metadata.get("config").and_then(|c| serde_json::from_str::<Value>(c).ok())
        && lists_steps(&cfg)
    {
        return LtxPreset::Distilled;
    }
    LtxPreset::Dev
}

/// The T5 text encoder of an [`LtxVideo`], loaded on first use.
pub struct LtxText {
    status: TextStatus,
    dtype: DType,
    device: Device,
    source: PathBuf,
    /// Behind a lock so that a shared model encodes prompts (jobs share one model).
    encoder: std::sync::Mutex<Option<LtxTextEncoder>>,
    /// The empty prompt's embedding per sequence length: text-free jobs on
    /// a shared model run T5 once.
    empty: std::sync::Mutex<EmptyPromptCache>,
    /// T5 forward passes run so far.
    runs: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for LtxText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LtxText")
            .field("available", &self.is_available())
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl LtxText {
    pub fn is_available(&self) -> bool {
        matches!(self.status, TextStatus::Present { .. })
    }

    pub fn is_loaded(&self) -> bool {
        self.encoder.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub fn status(&self) -> &TextStatus {
        &self.status
    }

    /// Loads the encoder (memory-mapped, in the model's dtype) unless it is
    /// loaded. Without one: an error naming what is missing.
    fn ensure(&self, slot: &mut Option<LtxTextEncoder>) -> Result<()> {
        if slot.is_none() {
            let (enc, tok) = match &self.status {
                TextStatus::Present { encoder_dir, tokenizer_dir, .. } => (encoder_dir.clone(), tokenizer_dir.clone()),
                TextStatus::Missing(why) => {
                    return Err(WeftError::ModelDir {
                        path: self.source.clone(),
                        reason: format!("no T5 text encoder to encode prompts with: {why}"),
                    });
                }
            };
            *slot = Some(load_text_encoder(&enc, &tok, self.dtype, &self.device)?);
        }
        Ok(())
    }

    /// The encoder, loading it on first use.
    pub fn encoder(&mut self) -> Result<&mut LtxTextEncoder> {
        let mut slot = self.encoder.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        self.ensure(&mut slot)?;
        let m = self.encoder.get_mut().unwrap_or_else(|e| e.into_inner());
        *m = slot;
        Ok(m.as_mut().expect("loaded above"))
    }

    /// `_get_t5_prompt_embeds(prompts, max_sequence_length)`; callable on a
    /// shared model (the encoder is locked while it runs).
    pub fn encode(&self, prompts: &[&str], max_sequence_length: usize) -> Result<PromptEmbeds> {
        let mut slot = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        self.ensure(&mut slot)?;
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(slot.as_mut().expect("loaded above").encode(prompts, max_sequence_length)?)
    }

    /// One prompt; the empty prompt comes from the model's cache after its
    /// first encoding.
    pub fn encode_one(&self, prompt: &str, max_sequence_length: usize) -> Result<PromptEmbeds> {
        if !prompt.is_empty() {
            return self.encode(&[prompt], max_sequence_length);
        }
        let mut slot = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        self.ensure(&mut slot)?;
        let mut empty = self.empty.lock().unwrap_or_else(|e| e.into_inner());
        let before = empty.len();
        let e = empty.get(slot.as_mut().expect("loaded above"), max_sequence_length)?;
        if empty.len() > before {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(e)
    }

    /// How many times T5 has run on this model (the empty prompt's cache
    /// spares it).
    pub fn encoder_runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn load_text_encoder(enc: &Path, tok: &Path, dtype: DType, device: &Device) -> Result<LtxTextEncoder> {
    let text_err = |path: &Path, e: candle_core::Error| WeftError::ModelDir { path: path.to_path_buf(), reason: e.to_string() };
    let parent = enc.parent().unwrap_or(enc);
    if enc.file_name().is_some_and(|n| n == "text_encoder") && tok == parent.join("tokenizer") {
        return LtxTextEncoder::load(parent, dtype, device).map_err(|e| text_err(parent, e));
    }
    // A T5 folder on its own: `LtxTextEncoder::load` reads `<root>/text_encoder`
    // and `<root>/tokenizer`, so give it such a root made of links.
    #[cfg(unix)]
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!("weft-t5-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| WeftError::Io { path: p, source }
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let abs = |p: &Path| std::fs::canonicalize(p).map_err(io(p));
        let linked = (|| {
            std::os::unix::fs::symlink(abs(enc)?, root.join("text_encoder")).map_err(io(&root))?;
            std::os::unix::fs::symlink(abs(tok)?, root.join("tokenizer")).map_err(io(&root))?;
            LtxTextEncoder::load(&root, dtype, device).map_err(|e| text_err(enc, e))
        })();
        let _ = std::fs::remove_dir_all(&root);
        let mut e = linked?;
        e.source = enc.to_path_buf();
        Ok(e)
    }
    #[cfg(not(unix))]
    Err(WeftError::ModelDir {
        path: enc.to_path_buf(),
        reason: "pass a folder holding text_encoder/ and tokenizer/".into(),
    })
}

/// A loaded LTX-Video model.
pub struct LtxVideo {
    pub transformer: LtxVideoTransformer3DModel,
    /// The VAE, always in f32 (the port computes in f32).
    pub vae: AutoencoderKLLTXVideo,
    pub scheduler: SchedulerConfig,
    pub text: LtxText,
    pub version: LtxVersion,
    pub layout: Layout,
    /// The snapshot directory or the single file.
    pub source: PathBuf,
    /// The transformer's (and text encoder's) compute dtype.
    pub dtype: DType,
    /// What the headers said (parameter counts, stored dtypes, files).
    pub inspection: LtxInspection,
    text_encoder_dir: Option<PathBuf>,
    device: Device,
}

impl std::fmt::Debug for LtxVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LtxVideo")
            .field("version", &self.version)
            .field("layout", &self.layout)
            .field("source", &self.source)
            .field("dtype", &self.dtype)
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl LtxVideo {
    /// Loads a diffusers snapshot directory or a single-file checkpoint
    /// (checked by [`inspect`] first), the transformer in `dtype` (F32, F16
    /// or BF16), the VAE in f32, onto `device`. `text_encoder`: see [`inspect`];
    /// the encoder itself loads on first use ([`LtxText::encoder`]).
    pub fn load(path: impl AsRef<Path>, text_encoder: Option<&Path>, dtype: DType, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(WeftError::BadOptions(format!("LTX-Video computes in f32, f16 or bf16, not {dtype:?}")));
        }
        let inspection = inspect(path, text_encoder)?;
        let (tfiles, vfiles) = (&inspection.transformer.files, &inspection.vae.files);
        let tvb = var_builder(tfiles, Some(&inspection.transformer_map), dtype, device)?;
        let scope = super::profile::scope("load.transformer");
        let transformer = LtxVideoTransformer3DModel::new(&inspection.transformer_config, tvb).map_err(|e| {
            corrupt(path, format!("building the transformer: {e}"))
        })?;
        drop(scope);
        let _scope = super::profile::scope("load.vae");
        let vvb = var_builder(vfiles, Some(&inspection.vae_map), DType::F32, device)?;
        let vae = AutoencoderKLLTXVideo::new(&inspection.vae_config, vvb)
            .map_err(|e| corrupt(path, format!("building the VAE: {e}")))?;
        Ok(Self {
            transformer,
            vae,
            scheduler: inspection.scheduler.clone(),
            text: LtxText {
                status: inspection.text.clone(),
                dtype,
                device: device.clone(),
                source: path.to_path_buf(),
                encoder: std::sync::Mutex::new(None),
                empty: std::sync::Mutex::new(EmptyPromptCache::new()),
                runs: std::sync::atomic::AtomicUsize::new(0),
            },
            version: inspection.version,
            layout: inspection.layout,
            source: path.to_path_buf(),
            dtype,
            inspection,
            text_encoder_dir: text_encoder.map(Path::to_path_buf),
            device: device.clone(),
        })
    }

    /// The same model read again onto another device.
    pub fn reload_on(&self, device: &Device) -> Result<Self> {
        Self::load(&self.source, self.text_encoder_dir.as_deref(), self.dtype, device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn transformer_config(&self) -> &tr::Config {
        self.transformer.config()
    }

    pub fn vae_config(&self) -> &vae::Config {
        &self.vae.config
    }

    pub fn transformer_parameters(&self) -> usize {
        self.inspection.transformer.parameters
    }

    pub fn vae_parameters(&self) -> usize {
        self.inspection.vae.parameters
    }

    /// Transformer + VAE parameters (the text encoder is counted apart).
    pub fn num_parameters(&self) -> usize {
        self.transformer_parameters() + self.vae_parameters()
    }

    /// "LTX-Video 0.9.5 (diffusers snapshot), 1.9 B transformer parameters, bf16, text encoder: yes".
    pub fn describe(&self) -> String {
        format!(
            "LTX-Video {} ({}), {} transformer parameters, {}, text encoder: {}",
            self.version,
            self.layout.name(),
            format_count(self.transformer_parameters()),
            match self.dtype {
                DType::BF16 => "bf16",
                DType::F16 => "f16",
                _ => "f32",
            },
            if self.text.is_available() { "yes" } else { "no" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tensor larger than several read pieces, at an odd offset and of a
    /// length that is no multiple of a piece, reads back bit for bit; a file
    /// cut short gives UnexpectedEof, not zeros.
    #[test]
    fn multi_piece_reads_are_exact() {
        let n = (8 << 20) / 4 * 3 + 12_345; // three 8 MiB pieces and a bit
        let vals: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3 + i as f32).collect();
        let mut file = tempfile::tempfile().unwrap();
        let head = [7u8; 13];
        file.write_all(&head).unwrap();
        for v in &vals {
            file.write_all(&v.to_le_bytes()).unwrap();
        }
        file.flush().unwrap();
        let got = read_typed::<f32>(&file, head.len() as u64, n * 4).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().zip(&vals).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The last piece past the end of the file.
        let e = read_typed::<f32>(&file, head.len() as u64 + 4, n * 4).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // Parallel conversion rounds as candle's own (it once rounded some
        // values just above halfway down: 2856.0002 to 2848, not 2864).
        let src = Tensor::from_vec(vals, n, &Device::Cpu).unwrap();
        let bits = |t: &Tensor| -> Vec<u16> {
            match t.dtype() {
                DType::BF16 => t.to_vec1::<half::bf16>().unwrap().iter().map(|x| x.to_bits()).collect(),
                _ => t.to_vec1::<half::f16>().unwrap().iter().map(|x| x.to_bits()).collect(),
            }
        };
        for dt in [DType::BF16, DType::F16] {
            let t = convert(got.clone(), &[n], dt).unwrap();
            assert!(bits(&t) == bits(&src.to_dtype(dt).unwrap()), "f32 -> {dt:?}");
        }
        let b16 = src.to_dtype(DType::BF16).unwrap();
        let back = convert(b16.to_vec1::<half::bf16>().unwrap(), &[n], DType::F32).unwrap();
        let want = b16.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        assert!(back.to_vec1::<f32>().unwrap().iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
