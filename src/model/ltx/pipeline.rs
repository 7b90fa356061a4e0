//! The LTX-Video sampling loops: diffusers 0.42.1's `LTXPipeline`
//! (text to video), `LTXImageToVideoPipeline` (the first frame given) and
//! `LTXConditionPipeline` (images / videos at any frame index, each with a
//! strength), over components passed by reference ([`LtxPipeline`]).
//!
//! What the three share:
//!
//! * Latents live in the VAE's latent space, *normalised* for the
//!   transformer (`(z - mean) / std` per channel, [`AutoencoderKLLTXVideo::normalize_latents`]),
//!   `[B, C, F, h, w]` with `F = (num_frames - 1) / temporal + 1`,
//!   `h = height / spatial`, `w = width / spatial`; the compression ratios come
//!   from the VAE's config ([`vae::Config::spatial_compression`] /
//!   [`vae::Config::temporal_compression`]), the patch sizes from the
//!   transformer's. The transformer sees them packed into tokens
//!   ([`pack_latents`], diffusers' `_pack_latents`).
//! * The schedule: `LTXPipeline` / `LTXImageToVideoPipeline` pass
//!   `sigmas = linspace(1, 1/n, n)` and the dynamic shift
//!   `mu = calculate_shift(F * h * w)`; `LTXConditionPipeline` passes
//!   `timesteps = linear_quadratic_schedule(n) * 1000` (or the caller's) and no
//!   `mu` (so, as in diffusers, it needs a scheduler config without
//!   `use_dynamic_shifting`).
//! * Rotary positions: `rope_interpolation_scale = (temporal / frame_rate,
//!   spatial, spatial)` on the latent grid; the condition pipeline passes
//!   explicit coordinates instead (conditioning tokens have their own).
//! * Classifier-free guidance when `guidance_scale > 1`: the batch is run as
//!   `[negative; positive]`, `uncond + g * (text - uncond)`, then
//!   `guidance_rescale` ([`rescale_noise_cfg`]) when > 0.
//! * Decoding: latents are denormalised; for a timestep-conditioned VAE the
//!   pipelines mix in fresh noise, `(1 - s) * z + s * noise` with
//!   `s = decode_noise_scale` (default `decode_timestep`), and decode at
//!   `decode_timestep`.
//!
//! Randomness comes only from a [`Noise`] the caller supplies: a seeded
//! generator (same seed, same output), or the tensors torch drew (parity
//! tests). Draws are made in diffusers' order: the posterior samples of the
//! encoded conditions (`latent_dist.sample`), the initial noise, the noise of
//! the extra conditioning tokens, the per-step conditioning noise
//! (`image_cond_noise_scale`), and the decode noise.
//!
//! Outputs ([`PipelineOutput`]): the final normalised latents
//! `[B, C, F, h, w]` (diffusers' `output_type="latent"`, unpacked), and, when
//! decoding, the VAE's output `[B, 3, F', H', W']` as is (nominally [-1, 1],
//! not clamped); [`to_unit_frames`] turns it into diffusers'
//! `output_type="pt"`: `[B, F', 3, H', W']` in [0, 1].
//!
//! Where weft departs from diffusers (all in cases diffusers rejects or
//! mishandles): `height`/`width` must be multiples of the VAE's spatial
//! compression (diffusers asks for 32 whatever the VAE); patch sizes > 1 are
//! handled consistently (diffusers' pipelines pass latent, not patch, grid
//! sizes); conditioning tokens are broadcast to the batch (diffusers' extra
//! tokens only work for a batch of 1); the `denoise_strength` start sigma is a
//! scalar (diffusers broadcasts a `[B]` tensor against the width); an empty
//! list of conditions is plain text to video.

use std::collections::VecDeque;

use candle_core::{D, DType, Device, IndexOp, Result, Tensor, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::scheduler::{
    FlowMatchEulerScheduler, SchedulerConfig, condition_pipeline_timesteps, condition_step,
    conditioning_timesteps, ltx_pipeline_sigmas,
};
use super::text::{EmptyPromptCache, LtxTextEncoder, PromptEmbeds};
use super::transformer::LtxVideoTransformer3DModel;
use super::vae::{self, AutoencoderKLLTXVideo};

// ------------------------------------------------------------------ noise

/// Where the pipelines' Gaussian draws come from.
pub enum Noise {
    /// Standard normal f32 from ChaCha8 seeded with the seed: reproducible
    /// (same seed, same bytes), not torch's stream.
    Seeded(Box<ChaCha8Rng>),
    /// Exactly these tensors, in order (e.g. the draws torch made); a draw of
    /// another shape, or one past the end, is an error.
    Given(VecDeque<Tensor>),
}

impl Noise {
    pub fn seeded(seed: u64) -> Self {
        Self::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed)))
    }

    pub fn given(draws: Vec<Tensor>) -> Self {
        Self::Given(draws.into())
    }

    /// A standard normal f32 tensor of `shape` on `device`.
    pub fn randn(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Self::Seeded(rng) => {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n)
                    .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
                    .collect();
                Tensor::from_vec(v, shape, device)
            }
            Self::Given(q) => {
                let Some(t) = q.pop_front() else {
                    bail!("noise: a draw of shape {shape:?} past the end of the given tensors")
                };
                if t.dims() != shape {
                    bail!(
                        "noise: the next given tensor has shape {:?}, the pipeline draws {shape:?}",
                        t.dims()
                    )
                }
                t.to_dtype(DType::F32)?.to_device(device)
            }
        }
    }

    /// Given tensors not drawn yet (0 for a seeded source).
    pub fn remaining(&self) -> usize {
        match self {
            Self::Seeded(_) => 0,
            Self::Given(q) => q.len(),
        }
    }
}

// ---------------------------------------------------------------- prompts

/// Encoded prompts (one per sample) and, for classifier-free guidance, the
/// negative prompts' encoding (same length).
#[derive(Debug, Clone)]
pub struct PromptBatch {
    pub positive: PromptEmbeds,
    pub negative: Option<PromptEmbeds>,
}

impl PromptBatch {
    pub fn new(positive: PromptEmbeds, negative: Option<PromptEmbeds>) -> Self {
        Self { positive, negative }
    }

    /// From raw tensors: embeddings `[B, L, d]` and masks `[B, L]` (0/1, any dtype).
    pub fn from_tensors(
        embeds: Tensor,
        mask: Tensor,
        negative: Option<(Tensor, Tensor)>,
    ) -> Result<Self> {
        let wrap = |embeds: Tensor, mask: Tensor| -> Result<PromptEmbeds> {
            let b = embeds.dim(0)?;
            Ok(PromptEmbeds {
                embeds,
                mask,
                truncated: vec![false; b],
            })
        };
        Ok(Self {
            positive: wrap(embeds, mask)?,
            negative: negative.map(|(e, m)| wrap(e, m)).transpose()?,
        })
    }

    pub fn batch_size(&self) -> Result<usize> {
        self.positive.embeds.dim(0)
    }

    pub fn device(&self) -> &Device {
        self.positive.embeds.device()
    }

    /// The transformer's text inputs: `[negative; positive]` with guidance.
    fn model_inputs(&self, guidance: bool) -> Result<(Tensor, Tensor)> {
        let pos = &self.positive;
        let mask = pos.mask.to_dtype(DType::F32)?;
        if !guidance {
            return Ok((pos.embeds.clone(), mask));
        }
        let Some(neg) = &self.negative else {
            bail!(
                "guidance_scale > 1 needs negative prompt embeddings (encode_prompts makes them from \"\")"
            )
        };
        if neg.embeds.dims() != pos.embeds.dims() || neg.mask.dims() != pos.mask.dims() {
            bail!(
                "negative prompt embeddings {:?} / mask {:?} do not match the prompts' {:?} / {:?}",
                neg.embeds.dims(),
                neg.mask.dims(),
                pos.embeds.dims(),
                pos.mask.dims()
            )
        }
        let embeds = Tensor::cat(&[&neg.embeds.to_dtype(pos.embeds.dtype())?, &pos.embeds], 0)?;
        let mask = Tensor::cat(&[&neg.mask.to_dtype(DType::F32)?, &mask], 0)?;
        Ok((embeds, mask))
    }
}

/// The pipelines' `encode_prompt`: the prompts, and when `with_negative` the
/// negative prompts (`None`: `""` for every sample, from `empty`'s cache).
pub fn encode_prompts(
    encoder: &mut LtxTextEncoder,
    empty: &mut EmptyPromptCache,
    prompts: &[&str],
    negative: Option<&[&str]>,
    with_negative: bool,
    max_sequence_length: usize,
) -> Result<PromptBatch> {
    let positive = encoder.encode(prompts, max_sequence_length)?;
    let negative = if !with_negative {
        None
    } else {
        Some(match negative {
            Some(n) => {
                if n.len() != prompts.len() {
                    bail!("{} negative prompts for {} prompts", n.len(), prompts.len())
                }
                encoder.encode(n, max_sequence_length)?
            }
            None => empty
                .get(encoder, max_sequence_length)?
                .repeat(prompts.len())?,
        })
    };
    Ok(PromptBatch { positive, negative })
}

// ---------------------------------------------------------------- options

/// Settings common to the three pipelines (diffusers' `__call__` arguments).
#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub height: usize,
    pub width: usize,
    pub num_frames: usize,
    pub frame_rate: f64,
    pub num_inference_steps: usize,
    /// Classifier-free guidance is on when > 1.
    pub guidance_scale: f64,
    pub guidance_rescale: f64,
    /// For timestep-conditioned VAEs.
    pub decode_timestep: f64,
    /// `None`: `decode_timestep`.
    pub decode_noise_scale: Option<f64>,
    /// False: stop at the latents (`output_type="latent"`), no decode draw.
    pub decode: bool,
}

impl Default for VideoOptions {
    /// `LTXPipeline`'s defaults.
    fn default() -> Self {
        Self {
            height: 512,
            width: 704,
            num_frames: 161,
            frame_rate: 25.0,
            num_inference_steps: 50,
            guidance_scale: 3.0,
            guidance_rescale: 0.0,
            decode_timestep: 0.0,
            decode_noise_scale: None,
            decode: true,
        }
    }
}

/// `LTXConditionPipeline`'s own settings.
#[derive(Debug, Clone)]
pub struct ConditionOptions {
    /// < 1: start part-way down the schedule from `latents` (img2img / vid2vid).
    pub denoise_strength: f64,
    /// Per-step noise on the hard-conditioning tokens, `scale * t^2`.
    pub image_cond_noise_scale: f64,
    /// Normalised latents `[B, C, F, h, w]` to start from; used (as in
    /// diffusers) only when `denoise_strength < 1`.
    pub latents: Option<Tensor>,
    /// Explicit timesteps (e.g. a distilled checkpoint's); `None`:
    /// `linear_quadratic_schedule(num_inference_steps) * 1000`.
    pub timesteps: Option<Vec<f64>>,
    /// Leading latent frames of a video condition at `frame_index > 0` that
    /// become extra conditioning tokens (diffusers' `num_prefix_latent_frames`).
    pub num_prefix_latent_frames: usize,
}

impl Default for ConditionOptions {
    fn default() -> Self {
        Self {
            denoise_strength: 1.0,
            image_cond_noise_scale: 0.15,
            latents: None,
            timesteps: None,
            num_prefix_latent_frames: 2,
        }
    }
}

/// An image or video the generated video must follow (`LTXVideoCondition`).
#[derive(Debug, Clone)]
pub struct Condition {
    /// Pixels in [-1, 1] at the output size: `[C, F, H, W]` (F = 1 for an
    /// image; `[C, H, W]` and `[1, C, F, H, W]` are accepted too). A video is
    /// trimmed to fit the output from `frame_index` and to `k * temporal + 1`
    /// frames (`trim_conditioning_sequence`).
    pub pixels: Tensor,
    /// Output frame of the condition's first frame.
    pub frame_index: usize,
    /// 1: hard conditioning; < 1: the condition is mixed with noise.
    pub strength: f64,
}

impl Condition {
    pub fn new(pixels: Tensor, frame_index: usize, strength: f64) -> Self {
        Self {
            pixels,
            frame_index,
            strength,
        }
    }

    /// `[1, C, F, H, W]`.
    fn pixels5(&self) -> Result<Tensor> {
        match self.pixels.rank() {
            3 => self.pixels.unsqueeze(1)?.unsqueeze(0),
            4 => self.pixels.unsqueeze(0),
            5 if self.pixels.dim(0)? == 1 => Ok(self.pixels.clone()),
            _ => bail!(
                "condition pixels must be [C, H, W], [C, F, H, W] or [1, C, F, H, W], not {:?}",
                self.pixels.dims()
            ),
        }
    }
}

/// What a pipeline returns.
#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// Final normalised latents `[B, C, F, h, w]`, f32.
    pub latents: Tensor,
    /// Decoded video `[B, 3, F', H', W']`, f32, the VAE's output unclamped
    /// (nominally [-1, 1]); `None` without decoding.
    pub video: Option<Tensor>,
}

impl PipelineOutput {
    /// The video as diffusers' `output_type="pt"`: `[B, F', 3, H', W']` in [0, 1].
    pub fn unit_frames(&self) -> Result<Option<Tensor>> {
        self.video.as_ref().map(to_unit_frames).transpose()
    }
}

/// `[B, C, F, H, W]` in [-1, 1] -> `[B, F, C, H, W]` in [0, 1]
/// (`VideoProcessor.postprocess_video(output_type="pt")`).
pub fn to_unit_frames(video: &Tensor) -> Result<Tensor> {
    video
        .affine(0.5, 0.5)?
        .clamp(0f32, 1f32)?
        .permute((0, 2, 1, 3, 4))?
        .contiguous()
}

// ---------------------------------------------------------------- helpers

/// `_pack_latents`: `[B, C, F, H, W]` -> `[B, F/pt * H/p * W/p, C * pt * p * p]`
/// (tokens in (frame, row, column) order, channels in (c, pt, p, p) order).
pub fn pack_latents(latents: &Tensor, patch_size: usize, patch_size_t: usize) -> Result<Tensor> {
    let (b, c, f, h, w) = latents.dims5()?;
    let (p, pt) = (patch_size, patch_size_t);
    if !f.is_multiple_of(pt) || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
        bail!("pack_latents: latents {f}x{h}x{w} are not whole patches of {pt}x{p}x{p}")
    }
    latents
        .reshape(vec![b, c, f / pt, pt, h / p, p, w / p, p])?
        .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
        .contiguous()?
        .reshape((b, (f / pt) * (h / p) * (w / p), c * pt * p * p))
}

/// `_unpack_latents`, the inverse of [`pack_latents`], given the *latent*
/// grid `(frames, height, width)`.
pub fn unpack_latents(
    latents: &Tensor,
    frames: usize,
    height: usize,
    width: usize,
    patch_size: usize,
    patch_size_t: usize,
) -> Result<Tensor> {
    let (b, s, d) = latents.dims3()?;
    let (p, pt) = (patch_size, patch_size_t);
    let (fp, hp, wp) = (frames / pt, height / p, width / p);
    if fp * hp * wp != s || d % (pt * p * p) != 0 {
        bail!("unpack_latents: {s} tokens of {d} do not make a {frames}x{height}x{width} grid")
    }
    let c = d / (pt * p * p);
    latents
        .reshape(vec![b, fp, hp, wp, c, pt, p, p])?
        .permute(vec![0, 4, 1, 5, 2, 6, 3, 7])?
        .contiguous()?
        .reshape((b, c, frames, height, width))
}

/// `torch.lerp(start, end, weight)` with a scalar weight (torch's formula:
/// from the nearer end).
pub fn lerp(start: &Tensor, end: &Tensor, weight: f64) -> Result<Tensor> {
    let w = weight as f32;
    let diff = (end - start)?;
    if w.abs() < 0.5 {
        start + (diff * w as f64)?
    } else {
        end - (diff * (1.0f32 - w) as f64)?
    }
}

/// Standard deviation over all but the batch dimension (unbiased, as
/// `torch.std`), shaped `[B, 1, ..., 1]`.
fn std_per_sample(x: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)?;
    let flat = x.to_dtype(DType::F32)?.reshape((b, ()))?;
    let n = flat.dim(1)?;
    let mean = flat.mean_keepdim(1)?;
    let var = (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)? / (n.max(2) - 1) as f64)?;
    let mut shape = vec![1usize; x.rank()];
    shape[0] = b;
    var.sqrt()?.reshape(shape)
}

/// diffusers' `rescale_noise_cfg` (Lin et al. 2023, section 3.4).
pub fn rescale_noise_cfg(
    noise_cfg: &Tensor,
    noise_pred_text: &Tensor,
    guidance_rescale: f64,
) -> Result<Tensor> {
    let std_text = std_per_sample(noise_pred_text)?;
    let std_cfg = std_per_sample(noise_cfg)?;
    let rescaled = noise_cfg.broadcast_mul(&(std_text / std_cfg)?)?;
    (rescaled * guidance_rescale)? + (noise_cfg * (1.0 - guidance_rescale))?
}

/// `LTXConditionPipeline.trim_conditioning_sequence`: frames of a video
/// condition starting at `start_frame` that are kept (a multiple of the
/// temporal compression plus one, inside the output).
pub fn trim_conditioning_sequence(
    start_frame: usize,
    sequence_num_frames: usize,
    target_num_frames: usize,
    temporal_compression: usize,
) -> usize {
    let n = sequence_num_frames.min(target_num_frames.saturating_sub(start_frame));
    if n == 0 {
        return 0;
    }
    (n - 1) / temporal_compression * temporal_compression + 1
}

/// The rotary inputs of one transformer call.
enum Rope<'t> {
    /// The latent grid in patches, with `rope_interpolation_scale`.
    Grid {
        frames: usize,
        height: usize,
        width: usize,
        scale: [f64; 3],
    },
    /// Explicit `[B, 3, seq]` coordinates (seconds, pixels, pixels).
    Coords(&'t Tensor),
}

// ---------------------------------------------------------------- pipeline

/// The components of an LTX-Video pipeline, borrowed.
#[derive(Clone, Copy)]
pub struct LtxPipeline<'a> {
    pub transformer: &'a LtxVideoTransformer3DModel,
    pub vae: &'a AutoencoderKLLTXVideo,
    pub scheduler: &'a SchedulerConfig,
}

impl<'a> LtxPipeline<'a> {
    pub fn new(
        transformer: &'a LtxVideoTransformer3DModel,
        vae: &'a AutoencoderKLLTXVideo,
        scheduler: &'a SchedulerConfig,
    ) -> Self {
        Self {
            transformer,
            vae,
            scheduler,
        }
    }

    /// Pixels per latent pixel (the VAE config's `spatial_compression_ratio`).
    pub fn vae_spatial_compression(&self) -> usize {
        self.vae.config.spatial_compression()
    }

    /// Frames per latent frame (the VAE config's `temporal_compression_ratio`).
    pub fn vae_temporal_compression(&self) -> usize {
        self.vae.config.temporal_compression()
    }

    fn patch(&self) -> (usize, usize) {
        let c = self.transformer.config();
        (c.patch_size, c.patch_size_t)
    }

    /// `(frames, height, width)` of the latents of a video of that size.
    pub fn latent_grid(
        &self,
        num_frames: usize,
        height: usize,
        width: usize,
    ) -> (usize, usize, usize) {
        let (s, t) = (
            self.vae_spatial_compression(),
            self.vae_temporal_compression(),
        );
        (num_frames.saturating_sub(1) / t + 1, height / s, width / s)
    }

    /// `(temporal / frame_rate, spatial, spatial)`.
    pub fn rope_interpolation_scale(&self, frame_rate: f64) -> [f64; 3] {
        let s = self.vae_spatial_compression() as f64;
        [self.vae_temporal_compression() as f64 / frame_rate, s, s]
    }

    pub fn pack(&self, latents: &Tensor) -> Result<Tensor> {
        let (p, pt) = self.patch();
        pack_latents(latents, p, pt)
    }

    pub fn unpack(&self, latents: &Tensor, grid: (usize, usize, usize)) -> Result<Tensor> {
        let (p, pt) = self.patch();
        unpack_latents(latents, grid.0, grid.1, grid.2, p, pt)
    }

    fn check_options(&self, opts: &VideoOptions) -> Result<(usize, usize, usize)> {
        let s = self.vae_spatial_compression();
        let (p, pt) = self.patch();
        if opts.height == 0
            || opts.width == 0
            || !opts.height.is_multiple_of(s)
            || !opts.width.is_multiple_of(s)
        {
            bail!(
                "height and width must be positive multiples of the VAE's spatial compression {s}, not {}x{}",
                opts.height,
                opts.width
            )
        }
        if opts.num_frames == 0 || opts.num_inference_steps == 0 {
            bail!("num_frames and num_inference_steps must be positive")
        }
        if opts.frame_rate.is_nan() || opts.frame_rate <= 0.0 {
            bail!("frame_rate must be positive, not {}", opts.frame_rate)
        }
        let g = self.latent_grid(opts.num_frames, opts.height, opts.width);
        if !g.0.is_multiple_of(pt) || !g.1.is_multiple_of(p) || !g.2.is_multiple_of(p) {
            bail!(
                "latent grid {}x{}x{} is not whole transformer patches of {pt}x{p}x{p}",
                g.0,
                g.1,
                g.2
            )
        }
        Ok(g)
    }

    /// One guided prediction: `latents` `[B, S, D]`, `timestep` `[B]` or `[B, S|1]`.
    fn predict(
        &self,
        latents: &Tensor,
        text: &(Tensor, Tensor),
        timestep: &Tensor,
        rope: &Rope,
        opts: &VideoOptions,
    ) -> Result<Tensor> {
        let guidance = opts.guidance_scale > 1.0;
        let b = latents.dim(0)?;
        let twice = |t: &Tensor| -> Result<Tensor> {
            if guidance {
                Tensor::cat(&[t, t], 0)
            } else {
                Ok(t.clone())
            }
        };
        let input = twice(latents)?;
        let ts = twice(timestep)?;
        let _scope = super::profile::scope("pipe.transformer");
        let pred = match rope {
            Rope::Grid {
                frames,
                height,
                width,
                scale,
            } => self.transformer.forward(
                &input,
                &text.0,
                &ts,
                Some(&text.1),
                *frames,
                *height,
                *width,
                Some(*scale),
                None,
            )?,
            Rope::Coords(c) => {
                let c = twice(c)?;
                self.transformer.forward(
                    &input,
                    &text.0,
                    &ts,
                    Some(&text.1),
                    0,
                    0,
                    0,
                    None,
                    Some(&c),
                )?
            }
        }
        .to_dtype(DType::F32)?;
        if !guidance {
            return Ok(pred);
        }
        let uncond = pred.narrow(0, 0, b)?;
        let cond = pred.narrow(0, b, b)?;
        let g = (&uncond + ((&cond - &uncond)? * opts.guidance_scale)?)?;
        if opts.guidance_rescale > 0.0 {
            rescale_noise_cfg(&g, &cond, opts.guidance_rescale)
        } else {
            Ok(g)
        }
    }

    /// `retrieve_latents(vae.encode(x), generator)`: a posterior sample
    /// `mean + exp(logvar / 2) * noise` of pixels `[B, C, F, H, W]` in [-1, 1].
    pub fn encode_sample(&self, pixels: &Tensor, noise: &mut Noise) -> Result<Tensor> {
        let _scope = super::profile::scope("pipe.vae_encode");
        let (mean, logvar) = self.vae.encode_dist(&pixels.to_dtype(DType::F32)?)?;
        let std = (logvar * 0.5)?.exp()?;
        let n = noise.randn(mean.dims(), mean.device())?;
        mean + std.mul(&n)?
    }

    /// Normalised latents `[B, C, F, h, w]` -> video: denormalise, mix in the
    /// decode noise for a timestep-conditioned VAE, decode.
    pub fn decode(
        &self,
        latents: &Tensor,
        opts: &VideoOptions,
        noise: &mut Noise,
    ) -> Result<Tensor> {
        let _scope = super::profile::scope("pipe.vae_decode");
        let dtype = self.vae.latents_mean.dtype();
        let mut z = self
            .vae
            .denormalize_latents(&latents.to_dtype(DType::F32)?)?;
        let b = z.dim(0)?;
        let timestep = if self.vae.config.timestep_conditioning {
            let n = noise.randn(z.dims(), z.device())?;
            let s = opts.decode_noise_scale.unwrap_or(opts.decode_timestep) as f32;
            z = ((z * (1.0f32 - s) as f64)? + (n * s as f64)?)?;
            Some(Tensor::full(opts.decode_timestep as f32, b, z.device())?.to_dtype(dtype)?)
        } else {
            None
        };
        self.vae
            .decode(&z.to_dtype(dtype)?, timestep.as_ref())?
            .to_dtype(DType::F32)
    }

    fn finish(
        &self,
        latents: Tensor,
        opts: &VideoOptions,
        noise: &mut Noise,
    ) -> Result<PipelineOutput> {
        let video = if opts.decode {
            Some(self.decode(&latents, opts, noise)?)
        } else {
            None
        };
        Ok(PipelineOutput { latents, video })
    }

    /// The `LTXPipeline` / `LTXImageToVideoPipeline` schedule.
    fn t2v_scheduler(
        &self,
        opts: &VideoOptions,
        grid: (usize, usize, usize),
    ) -> Result<FlowMatchEulerScheduler> {
        let mut sched = FlowMatchEulerScheduler::new(self.scheduler.clone())?;
        let mu = self.scheduler.mu_for(grid.0 * grid.1 * grid.2);
        sched.set_timesteps_sigmas(&ltx_pipeline_sigmas(opts.num_inference_steps), Some(mu))?;
        Ok(sched)
    }

    fn grid_rope(&self, grid: (usize, usize, usize), frame_rate: f64) -> Rope<'static> {
        let (p, pt) = self.patch();
        Rope::Grid {
            frames: grid.0 / pt,
            height: grid.1 / p,
            width: grid.2 / p,
            scale: self.rope_interpolation_scale(frame_rate),
        }
    }

    /// `LTXPipeline.__call__`: text to video.
    pub fn text_to_video(
        &self,
        prompts: &PromptBatch,
        opts: &VideoOptions,
        noise: &mut Noise,
    ) -> Result<PipelineOutput> {
        let grid = self.check_options(opts)?;
        let dev = prompts.device().clone();
        let b = prompts.batch_size()?;
        let text = prompts.model_inputs(opts.guidance_scale > 1.0)?;
        let c = self.transformer.config().in_channels;
        let mut latents = self.pack(&noise.randn(&[b, c, grid.0, grid.1, grid.2], &dev)?)?;
        let mut sched = self.t2v_scheduler(opts, grid)?;
        let rope = self.grid_rope(grid, opts.frame_rate);
        for t in sched.timesteps.clone() {
            let ts = Tensor::full(t, b, &dev)?;
            let pred = self.predict(&latents, &text, &ts, &rope, opts)?;
            latents = sched.step(&pred, t, &latents)?;
        }
        let latents = self.unpack(&latents, grid)?;
        self.finish(latents, opts, noise)
    }

    /// `LTXImageToVideoPipeline.__call__`: `image` `[B, C, H, W]` in [-1, 1]
    /// (one per prompt, at the output size) is the first frame.
    pub fn image_to_video(
        &self,
        prompts: &PromptBatch,
        image: &Tensor,
        opts: &VideoOptions,
        noise: &mut Noise,
    ) -> Result<PipelineOutput> {
        let grid = self.check_options(opts)?;
        let dev = prompts.device().clone();
        let b = prompts.batch_size()?;
        let (ib, _, ih, iw) = image.dims4()?;
        if ib != b || ih != opts.height || iw != opts.width {
            bail!(
                "image_to_video: image {:?} for {b} prompts at {}x{}",
                image.dims(),
                opts.height,
                opts.width
            )
        }
        let text = prompts.model_inputs(opts.guidance_scale > 1.0)?;
        let c = self.transformer.config().in_channels;
        let (lf, lh, lw) = grid;

        let mut init = Vec::with_capacity(b);
        for i in 0..b {
            let x = image.i(i)?.unsqueeze(0)?.unsqueeze(2)?.to_device(&dev)?;
            init.push(self.encode_sample(&x, noise)?);
        }
        let init = Tensor::cat(&init, 0)?;
        if init.dims() != [b, c, 1, lh, lw] {
            bail!(
                "image_to_video: the VAE encodes the image to {:?}, the latent grid is {b}x{c}x1x{lh}x{lw}",
                init.dims()
            )
        }
        // diffusers normalises with the default scaling factor 1 here.
        let init =
            vae::normalize_latents(&init, &self.vae.latents_mean, &self.vae.latents_std, 1.0)?
                .repeat((1, 1, lf, 1, 1))?;
        let mut m = vec![0f32; lf];
        m[0] = 1.0;
        let mask5 =
            Tensor::from_vec(m, (1, 1, lf, 1, 1), &dev)?.broadcast_as((b, 1, lf, lh, lw))?;
        let n = noise.randn(&[b, c, lf, lh, lw], &dev)?;
        let latents = (init.broadcast_mul(&mask5)? + n.broadcast_mul(&(1.0 - &mask5)?)?)?;
        let mut latents = self.pack(&latents)?;
        // per token: 1 on the first (patch) frame
        let (p, _) = self.patch();
        let seq = latents.dim(1)?;
        let first = (lh / p) * (lw / p);
        let tok: Vec<f32> = (0..seq)
            .map(|i| if i < first { 1.0 } else { 0.0 })
            .collect();
        let one_minus = (1.0 - Tensor::from_vec(tok, (1, seq), &dev)?)?.repeat((b, 1))?;

        let mut sched = self.t2v_scheduler(opts, grid)?;
        let rope = self.grid_rope(grid, opts.frame_rate);
        for t in sched.timesteps.clone() {
            let ts = (Tensor::full(t, (b, 1), &dev)?.broadcast_mul(&one_minus))?;
            let pred = self.predict(&latents, &text, &ts, &rope, opts)?;
            let pred = self.unpack(&pred, grid)?;
            let lat = self.unpack(&latents, grid)?;
            let next = if lf > 1 {
                let stepped =
                    sched.step(&pred.narrow(2, 1, lf - 1)?, t, &lat.narrow(2, 1, lf - 1)?)?;
                Tensor::cat(&[&lat.narrow(2, 0, 1)?, &stepped], 2)?
            } else {
                lat
            };
            latents = self.pack(&next)?;
        }
        let latents = self.unpack(&latents, grid)?;
        self.finish(latents, opts, noise)
    }

    /// Token coordinates `[B, 3, n]` (latent units, before scaling) of a
    /// `frames x height x width` latent grid (`_prepare_video_ids`).
    fn video_ids(&self, frames: usize, height: usize, width: usize) -> Vec<[i64; 3]> {
        let (p, pt) = self.patch();
        let mut v = Vec::new();
        for f in (0..frames).step_by(pt) {
            for y in (0..height).step_by(p) {
                for x in (0..width).step_by(p) {
                    v.push([f as i64, y as i64, x as i64]);
                }
            }
        }
        v
    }

    /// `_scale_video_ids` and the pipeline's `/ frame_rate`: `[B, 3, n]` f32.
    fn scaled_coords(
        &self,
        ids: &[[i64; 3]],
        frame_index: usize,
        frame_rate: f64,
        batch: usize,
        dev: &Device,
    ) -> Result<Tensor> {
        let s = self.vae_spatial_compression() as i64;
        let st = self.vae_temporal_compression() as i64;
        let inv = (1.0 / frame_rate) as f32;
        let n = ids.len();
        let mut v = vec![0f32; 3 * n];
        for (i, [f, y, x]) in ids.iter().enumerate() {
            let f = (f * st + 1 - st).max(0) + frame_index as i64;
            v[i] = f as f32 * inv;
            v[n + i] = (y * s) as f32;
            v[2 * n + i] = (x * s) as f32;
        }
        Tensor::from_vec(v, (1, 3, n), dev)?.repeat((batch, 1, 1))
    }

    /// `LTXConditionPipeline.__call__`.
    pub fn condition(
        &self,
        prompts: &PromptBatch,
        conditions: &[Condition],
        opts: &VideoOptions,
        copts: &ConditionOptions,
        noise: &mut Noise,
    ) -> Result<PipelineOutput> {
        self.condition_observed(prompts, conditions, opts, copts, noise, &mut |_, _| {})
    }

    /// [`Self::condition`], calling `on_step(done, total)` after every
    /// denoising step (progress; it cannot change the result).
    pub fn condition_observed(
        &self,
        prompts: &PromptBatch,
        conditions: &[Condition],
        opts: &VideoOptions,
        copts: &ConditionOptions,
        noise: &mut Noise,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<PipelineOutput> {
        let grid = self.check_options(opts)?;
        if !(0.0..=1.0).contains(&copts.denoise_strength) {
            bail!(
                "denoise_strength must be in [0, 1], not {}",
                copts.denoise_strength
            )
        }
        let dev = prompts.device().clone();
        let b = prompts.batch_size()?;
        let text = prompts.model_inputs(opts.guidance_scale > 1.0)?;
        let c = self.transformer.config().in_channels;
        let (lf, lh, lw) = grid;
        let tc = self.vae_temporal_compression();
        let conditioned = !conditions.is_empty();

        // the condition pixels, trimmed
        let mut tensors = Vec::with_capacity(conditions.len());
        for (k, cond) in conditions.iter().enumerate() {
            let mut x = cond.pixels5()?.to_device(&dev)?;
            let (_, _, f, h, w) = x.dims5()?;
            if h != opts.height || w != opts.width {
                bail!(
                    "condition {k}: {h}x{w} pixels, the output is {}x{}",
                    opts.height,
                    opts.width
                )
            }
            if cond.frame_index >= opts.num_frames {
                bail!(
                    "condition {k}: frame_index {} is past the {} output frames",
                    cond.frame_index,
                    opts.num_frames
                )
            }
            if f > 1 {
                let keep = trim_conditioning_sequence(cond.frame_index, f, opts.num_frames, tc);
                x = x.narrow(2, 0, keep)?;
            }
            let f = x.dim(2)?;
            if (f - 1) % tc != 0 {
                bail!("condition {k}: {f} frames; a condition needs k * {tc} + 1 frames")
            }
            tensors.push(x);
        }

        // the schedule
        let ts: Vec<f64> = match &copts.timesteps {
            Some(t) => t.clone(),
            None => condition_pipeline_timesteps(opts.num_inference_steps)
                .into_iter()
                .map(f64::from)
                .collect(),
        };
        let mut sched = FlowMatchEulerScheduler::new(self.scheduler.clone())?;
        sched.set_timesteps_explicit(&ts, None)?;
        let mut timesteps = sched.timesteps.clone();
        let mut latent_sigma = None;
        if copts.denoise_strength < 1.0 {
            let (sigmas, t, _) = sched.strength_tail(copts.denoise_strength);
            timesteps = t;
            latent_sigma = sigmas.first().copied();
        }

        // prepare_latents
        let n0 = noise.randn(&[b, c, lf, lh, lw], &dev)?;
        let mut latents = match (&copts.latents, latent_sigma) {
            (Some(l), Some(sigma)) => {
                if l.dims() != [b, c, lf, lh, lw] {
                    bail!(
                        "latents {:?} do not match the latent shape {:?}",
                        l.dims(),
                        [b, c, lf, lh, lw]
                    )
                }
                let l = l.to_dtype(DType::F32)?.to_device(&dev)?;
                ((&n0 * sigma as f64)? + (l * (1.0f32 - sigma) as f64)?)?
            }
            _ => n0,
        };
        let mut frame_mask = vec![0f32; lf];
        let mut extra_latents = Vec::new();
        let mut extra_coords = Vec::new();
        let mut extra_mask = Vec::new();
        let prefix = copts.num_prefix_latent_frames;
        for (k, (cond, data)) in conditions.iter().zip(&tensors).enumerate() {
            let cl = self.encode_sample(data, noise)?;
            let cl =
                vae::normalize_latents(&cl, &self.vae.latents_mean, &self.vae.latents_std, 1.0)?;
            let (_, cc, ncf, ch, cw) = cl.dims5()?;
            if cc != c || ch != lh || cw != lw || ncf > lf {
                bail!(
                    "condition {k}: the VAE encodes it to {:?}, the latent grid is {c}x{lf}x{lh}x{lw}",
                    cl.dims()
                )
            }
            let ndf = data.dim(2)?;
            let strength = cond.strength;
            if cond.frame_index == 0 {
                let head = latents.narrow(2, 0, ncf)?;
                let new = lerp(&head, &cl.broadcast_as(head.shape())?, strength)?;
                latents = if ncf < lf {
                    Tensor::cat(&[&new, &latents.narrow(2, ncf, lf - ncf)?], 2)?
                } else {
                    new
                };
                for m in frame_mask.iter_mut().take(ncf) {
                    *m = strength as f32;
                }
                continue;
            }
            let mut cl = cl;
            if ndf > 1 {
                if ncf < prefix {
                    bail!(
                        "condition {k}: a video at frame {} needs at least {prefix} latent frames, it has {ncf}",
                        cond.frame_index
                    )
                }
                if ncf > prefix {
                    let start = cond.frame_index / tc + prefix;
                    let end = start + ncf - prefix;
                    if end > lf {
                        bail!(
                            "condition {k}: latent frames {start}..{end} are past the {lf} of the output"
                        )
                    }
                    let mid = latents.narrow(2, start, end - start)?;
                    let tail = cl.narrow(2, prefix, ncf - prefix)?;
                    let new = lerp(&mid, &tail.broadcast_as(mid.shape())?, strength)?;
                    let mut parts = Vec::with_capacity(3);
                    if start > 0 {
                        parts.push(latents.narrow(2, 0, start)?);
                    }
                    parts.push(new);
                    if end < lf {
                        parts.push(latents.narrow(2, end, lf - end)?);
                    }
                    latents = Tensor::cat(&parts, 2)?;
                    for m in &mut frame_mask[start..end] {
                        *m = strength as f32;
                    }
                    cl = cl.narrow(2, 0, prefix)?;
                }
            }
            let n = noise.randn(cl.dims(), &dev)?;
            let cl = lerp(&n, &cl, strength)?;
            let ids = self.video_ids(cl.dim(2)?, lh, lw);
            extra_coords.push(self.scaled_coords(
                &ids,
                cond.frame_index,
                opts.frame_rate,
                b,
                &dev,
            )?);
            let packed = self.pack(&cl)?;
            let (_, sx, dx) = packed.dims3()?;
            extra_latents.push(packed.broadcast_as((b, sx, dx))?.contiguous()?);
            extra_mask.push(Tensor::full(strength as f32, (b, sx), &dev)?);
        }
        let ids = self.video_ids(lf, lh, lw);
        let mut coords = self.scaled_coords(&ids, 0, opts.frame_rate, b, &dev)?;
        let mut latents = self.pack(&latents)?;
        let mut mask = None;
        let n_extra: usize = extra_latents
            .iter()
            .map(|t| t.dim(1))
            .sum::<Result<usize>>()?;
        if conditioned {
            let tok: Vec<f32> = ids
                .iter()
                .map(|[f, _, _]| frame_mask[*f as usize])
                .collect();
            let n = tok.len();
            let mut m = Tensor::from_vec(tok, (1, n), &dev)?.repeat((b, 1))?;
            if !extra_latents.is_empty() {
                let mut l: Vec<&Tensor> = extra_latents.iter().collect();
                l.push(&latents);
                latents = Tensor::cat(&l, 1)?;
                let mut cs: Vec<&Tensor> = extra_coords.iter().collect();
                cs.push(&coords);
                coords = Tensor::cat(&cs, 2)?;
                let mut ms: Vec<&Tensor> = extra_mask.iter().collect();
                ms.push(&m);
                m = Tensor::cat(&ms, 1)?;
            }
            mask = Some(m);
        }
        let init_latents = conditioned.then(|| latents.clone());
        // hard-conditioning tokens (mask > 1 - 1e-6), for the per-step noise
        let hard = match &mask {
            Some(m) => Some(m.gt(1.0 - 1e-6)?.unsqueeze(D::Minus1)?),
            None => None,
        };

        let rope = Rope::Coords(&coords);
        for (si, &t) in timesteps.iter().enumerate() {
            if let (Some(init), Some(hard)) = (&init_latents, &hard)
                && copts.image_cond_noise_scale > 0.0
            {
                let n = noise.randn(latents.dims(), &dev)?;
                let tt = t / 1000.0f32;
                let noised = (init
                    + ((n * copts.image_cond_noise_scale as f32 as f64)? * (tt * tt) as f64)?)?;
                latents = hard
                    .broadcast_as(latents.shape())?
                    .where_cond(&noised, &latents)?;
            }
            let ts = match &mask {
                Some(m) => conditioning_timesteps(t, m)?,
                None => Tensor::full(t, (b, 1), &dev)?,
            };
            let pred = self.predict(&latents, &text, &ts, &rope, opts)?;
            latents = condition_step(&mut sched, &pred, t, &latents, mask.as_ref())?;
            on_step(si + 1, timesteps.len());
        }
        let s = latents.dim(1)?;
        let latents = self.unpack(&latents.narrow(1, n_extra, s - n_extra)?, grid)?;
        self.finish(latents, opts, noise)
    }
}
