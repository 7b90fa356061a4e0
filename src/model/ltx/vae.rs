//! The LTX-Video causal video VAE (diffusers' `AutoencoderKLLTXVideo`).
//!
//! Architecture, in short (tensors are `[B, C, T, H, W]` throughout):
//!
//! * Every convolution is a 3-D convolution with a 3x3x3 (or 1x1x1) kernel,
//!   zero-padded in space and *replicate*-padded in time: causal layers
//!   (the encoder) repeat the first frame `kt - 1` times on the left, so a frame
//!   only sees the past; non-causal layers (the decoder) repeat the first and
//!   last frames `(kt - 1) / 2` times on either side. candle has no conv3d, so
//!   [`CausalConv3d`] folds the frames into the batch and sums one conv2d per
//!   temporal tap over the time-shifted frames.
//! * Resnet blocks: channel RMSNorm (no affine) -> SiLU -> conv -> RMSNorm ->
//!   SiLU -> conv, plus a (LayerNorm + 1x1x1 conv) shortcut when the width
//!   changes. With timestep conditioning each block adds its own
//!   `scale_shift_table` to a timestep embedding, giving shift/scale pairs
//!   after both norms; with noise injection a per-channel scaled spatial
//!   Gaussian noise is added after each conv.
//! * Encoder: space-to-depth of `patch_size` x `patch_size` pixels into
//!   channels (in diffusers' (c, p_t, p_w, p_h) channel order), `conv_in`,
//!   down blocks, a mid block, RMSNorm, SiLU, and `conv_out` to
//!   `latent_channels + 1` channels: the latent mean and one shared log-variance
//!   channel. Down blocks are either the 0.9.0 `LTXVideoDownBlock3D` (resnets,
//!   an optional stride-2 conv, a widening resnet) or the 0.9.5+
//!   `LTXVideo095DownBlock3D` (resnets and an optional [`Downsampler3d`]: a conv
//!   followed by space-to-depth by the stride (1,2,2) / (2,1,1) / (2,2,2), plus
//!   a residual that is the space-to-depth input averaged over channel groups).
//!   Temporal downsampling first prepends `stride_t - 1` copies of the first
//!   frames, so 8k+1 frames go to k+1 latent frames.
//! * Decoder: `conv_in`, a mid block, up blocks (an optional widening resnet,
//!   an optional [`Upsampler3d`]: conv to `C * 8 / upsample_factor` channels
//!   then depth-to-space by (2,2,2), dropping the first output frame, plus,
//!   with `upsample_residual`, the depth-to-space input tiled over channels),
//!   RMSNorm, (timestep shift/scale), SiLU, `conv_out` and depth-to-space of the
//!   patches. With `timestep_conditioning` the decode timestep (times
//!   `timestep_scale_multiplier`) goes through a PixArt-alpha sinusoid + MLP
//!   embedder per block.
//! * Latents are normalised for the transformer with the per-channel
//!   `latents_mean` / `latents_std` buffers and `scaling_factor`
//!   ([`normalize_latents`] / [`denormalize_latents`]).
//!
//! Parameter names are diffusers' own, so `vae/diffusion_pytorch_model.safetensors`
//! loads as is; [`Config`] reads diffusers' `vae/config.json`. Computation is in
//! the `VarBuilder`'s dtype (f32 or bf16).
//!
//! On the CPU, stride-1 convolutions run on [`kernels::Conv3d`] (no im2col
//! buffer: f32 as a direct convolution over a padded `[T][H][C][W]` copy,
//! bf16 on AMX / AVX-512 BF16 tiles), with each resnet's RMSNorm +
//! shift/scale + SiLU (and the shortcut's LayerNorm) fused into the copy of
//! the convolution's input, the residual addition into its output, and the
//! upsamplers' depth-to-space (+ residual) and the final un-patchify written
//! directly by the convolution's epilogue.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Result, Shape, Tensor, bail};
use candle_nn::{Linear, VarBuilder};

use super::kernels::{self, Prologue, Scatter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// diffusers' `AutoencoderKLLTXVideo` config (`vae/config.json`). Missing
/// fields take diffusers' defaults (the 0.9.0 layout).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub decoder_block_out_channels: Vec<usize>,
    pub layers_per_block: Vec<usize>,
    pub decoder_layers_per_block: Vec<usize>,
    pub spatio_temporal_scaling: Vec<bool>,
    pub decoder_spatio_temporal_scaling: Vec<bool>,
    pub decoder_inject_noise: Vec<bool>,
    pub downsample_type: Vec<String>,
    pub upsample_residual: Vec<bool>,
    pub upsample_factor: Vec<usize>,
    pub timestep_conditioning: bool,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub resnet_norm_eps: f64,
    pub scaling_factor: f64,
    pub encoder_causal: bool,
    pub decoder_causal: bool,
    pub spatial_compression_ratio: Option<usize>,
    pub temporal_compression_ratio: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 128,
            block_out_channels: vec![128, 256, 512, 512],
            down_block_types: vec!["LTXVideoDownBlock3D".into(); 4],
            decoder_block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: vec![4, 3, 3, 3, 4],
            decoder_layers_per_block: vec![4, 3, 3, 3, 4],
            spatio_temporal_scaling: vec![true, true, true, false],
            decoder_spatio_temporal_scaling: vec![true, true, true, false],
            decoder_inject_noise: vec![false; 5],
            downsample_type: vec!["conv".into(); 4],
            upsample_residual: vec![false; 4],
            upsample_factor: vec![1; 4],
            timestep_conditioning: false,
            patch_size: 4,
            patch_size_t: 1,
            resnet_norm_eps: 1e-6,
            scaling_factor: 1.0,
            encoder_causal: true,
            decoder_causal: false,
            spatial_compression_ratio: None,
            temporal_compression_ratio: None,
        }
    }
}

impl Config {
    /// LTX-Video 0.9.5's VAE, as diffusers' `convert_ltx_to_diffusers.py` writes it.
    pub fn ltx_095() -> Self {
        Self {
            latent_channels: 128,
            block_out_channels: vec![128, 256, 512, 1024, 2048],
            down_block_types: vec!["LTXVideo095DownBlock3D".into(); 4],
            decoder_block_out_channels: vec![256, 512, 1024],
            layers_per_block: vec![4, 6, 6, 2, 2],
            decoder_layers_per_block: vec![5, 5, 5, 5],
            spatio_temporal_scaling: vec![true; 4],
            decoder_spatio_temporal_scaling: vec![true; 3],
            decoder_inject_noise: vec![false; 4],
            downsample_type: ["spatial", "temporal", "spatiotemporal", "spatiotemporal"]
                .map(String::from)
                .to_vec(),
            upsample_residual: vec![true; 3],
            upsample_factor: vec![2; 3],
            timestep_conditioning: true,
            spatial_compression_ratio: Some(32),
            temporal_compression_ratio: Some(8),
            ..Self::default()
        }
    }

    /// Pixels per latent pixel (diffusers' `spatial_compression_ratio`).
    pub fn spatial_compression(&self) -> usize {
        self.spatial_compression_ratio.unwrap_or_else(|| {
            self.patch_size * (1 << self.spatio_temporal_scaling.iter().filter(|&&s| s).count())
        })
    }

    /// Frames per latent frame (diffusers' `temporal_compression_ratio`).
    pub fn temporal_compression(&self) -> usize {
        self.temporal_compression_ratio.unwrap_or_else(|| {
            self.patch_size_t * (1 << self.spatio_temporal_scaling.iter().filter(|&&s| s).count())
        })
    }
}

/// Source of the decoder's injected noise: none (zero noise) or a seeded
/// generator (not torch's stream: seeded decodes are reproducible, not
/// bit-identical to diffusers').
pub struct NoiseGen(Option<ChaCha8Rng>);

impl NoiseGen {
    pub fn off() -> Self {
        Self(None)
    }
    pub fn seeded(seed: u64) -> Self {
        Self(Some(ChaCha8Rng::seed_from_u64(seed)))
    }
    /// `[h, w]` standard normal noise, or `None` when disabled.
    fn spatial(&mut self, h: usize, w: usize, dev: &Device) -> Result<Option<Tensor>> {
        let Some(rng) = self.0.as_mut() else {
            return Ok(None);
        };
        let v: Vec<f32> = (0..h * w)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Ok(Some(Tensor::from_vec(v, (h, w), dev)?))
    }
}

// ---------------------------------------------------------------- helpers

/// RMSNorm over the channel dimension (dim 1), no affine (diffusers' eps 1e-8).
fn rms_norm_c(x: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)
}

/// `x` reshaped to `[1, C, 1, 1, 1]` for broadcasting over `[B, C, T, H, W]`.
fn per_channel(x: &Tensor) -> Result<Tensor> {
    x.reshape((1, x.elem_count(), 1, 1, 1))
}

/// `[B, C, T, H, W]` -> `[B, C*s0*s1*s2, T/s0, H/s1, W/s2]`, channel order (c, s0, s1, s2).
fn space_to_depth(x: &Tensor, (s0, s1, s2): (usize, usize, usize)) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    x.reshape(vec![b, c, t / s0, s0, h / s1, s1, w / s2, s2])?
        .permute(vec![0, 1, 3, 5, 7, 2, 4, 6])?
        .reshape((b, c * s0 * s1 * s2, t / s0, h / s1, w / s2))
}

/// Inverse of [`space_to_depth`]: `[B, C*s0*s1*s2, T, H, W]` -> `[B, C, T*s0, H*s1, W*s2]`.
fn depth_to_space(x: &Tensor, (s0, s1, s2): (usize, usize, usize)) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    let s = s0 * s1 * s2;
    x.reshape(vec![b, c / s, s0, s1, s2, t, h, w])?
        .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
        .reshape((b, c / s, t * s0, h * s1, w * s2))
}

/// diffusers' `get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0)`.
fn timestep_sinusoid(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(DType::F32)?
        .reshape((t.elem_count(), 1))?
        .broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], 1)
}

// ---------------------------------------------------------------- layers

/// diffusers' `LTXVideoCausalConv3d` (its `nn.Conv3d` under `conv`).
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    /// The conv3d weight `[O, I, kt, kh, kw]` split into `kt` conv2d kernels
    /// `[O, I, kh, kw]`, one per temporal tap (empty when `fast` is used).
    taps: Vec<Tensor>,
    /// The CPU kernel's prepared weights (stride 1, f32/bf16 on the CPU): no
    /// im2col buffer, fused norm/activation prologue and residual epilogue.
    fast: Option<Arc<kernels::Conv3d>>,
    bias: Tensor,
    kernel: (usize, usize, usize),
    stride: (usize, usize, usize),
    causal: bool,
}

impl CausalConv3d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: (usize, usize, usize),
        causal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let weight = vb.get((out_c, in_c, kernel, kernel, kernel), "weight")?;
        let bias = vb.get(out_c, "bias")?;
        if stride.1 != stride.2 {
            bail!("CausalConv3d: unequal spatial strides {stride:?}");
        }
        let fast = if stride == (1, 1, 1) {
            // `weight` is dropped below when the kernel takes it.
            kernels::Conv3d::new_reusing(&weight, &bias)?.map(Arc::new)
        } else {
            None
        };
        if fast.is_some() {
            return Ok(Self {
                taps: Vec::new(),
                fast,
                bias,
                kernel: (kernel, kernel, kernel),
                stride,
                causal,
            });
        }
        // Split once at load (the 5-D weight is then dropped). Zero-stride
        // placeholders (see `tensor_shapes`) stay views.
        let taps = (0..kernel)
            .map(|k| {
                let t = weight.narrow(2, k, 1)?.squeeze(2)?;
                if t.stride().contains(&0) {
                    Ok(t)
                } else {
                    t.contiguous()
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            taps,
            fast: None,
            bias,
            kernel: (kernel, kernel, kernel),
            stride,
            causal,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, Prologue::None, None)
    }

    /// The fused CPU kernel with its output written through `scatter`
    /// (`None` when this convolution has no fused kernel).
    fn forward_scatter(&self, x: &Tensor, pro: Prologue, scatter: Scatter) -> Result<Option<Tensor>> {
        match &self.fast {
            Some(f) => Ok(Some(f.forward_scatter(x, self.causal, pro, None, scatter)?)),
            None => Ok(None),
        }
    }

    /// Whether the fused CPU kernel runs this convolution.
    fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// `conv(prologue(x)) (+ residual)`: fused on the CPU kernel, else the
    /// prologue as candle ops, candle's convolution, and the addition.
    pub fn forward_fused(&self, x: &Tensor, pro: Prologue, residual: Option<&Tensor>) -> Result<Tensor> {
        if let Some(f) = &self.fast {
            return f.forward(x, self.causal, pro, residual);
        }
        let x = match pro {
            Prologue::None => x.clone(),
            Prologue::RmsNormSilu { eps, modulation } => {
                let mut h = rms_norm_c(x, eps as f64)?;
                if let Some((shift, scale)) = modulation {
                    let (b, c) = (h.dim(0)?, h.dim(1)?);
                    let t = |v: &[f32]| {
                        Tensor::from_slice(v, (b, c, 1, 1, 1), x.device())?.to_dtype(x.dtype())
                    };
                    h = h.broadcast_mul(&(t(scale)? + 1.0)?)?.broadcast_add(&t(shift)?)?;
                }
                h.silu()?
            }
            Prologue::LayerNorm { eps, weight, bias } => {
                let c = x.dim(1)?;
                let t = |v: &[f32]| Tensor::from_slice(v, (1, c, 1, 1, 1), x.device())?.to_dtype(x.dtype());
                let mean = x.mean_keepdim(1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(1)?;
                xc.broadcast_div(&(var + eps as f64)?.sqrt()?)?
                    .broadcast_mul(&t(weight)?)?
                    .broadcast_add(&t(bias)?)?
            }
        };
        let y = self.forward_candle(&x)?;
        match residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, h, w) = x.dims5()?;
        let (kt, kh, _) = self.kernel;
        let (st, ss, _) = self.stride;
        // Frames-major so that any run of frames folds into the conv2d batch.
        let xf = x.permute((0, 2, 1, 3, 4))?;
        let xf = if kt > 1 {
            let t = xf.dim(1)?;
            let (left, right) = if self.causal {
                (kt - 1, 0)
            } else {
                ((kt - 1) / 2, (kt - 1) / 2)
            };
            let mut parts = Vec::with_capacity(3);
            if left > 0 {
                parts.push(xf.narrow(1, 0, 1)?.repeat((1, left, 1, 1, 1))?);
            }
            parts.push(xf.clone());
            if right > 0 {
                parts.push(xf.narrow(1, t - 1, 1)?.repeat((1, right, 1, 1, 1))?);
            }
            Tensor::cat(&parts, 1)?
        } else {
            xf.contiguous()?
        };
        let tp = xf.dim(1)?;
        if tp < kt {
            bail!("CausalConv3d: {tp} padded frames for a temporal kernel of {kt}");
        }
        let t_out = (tp - kt) / st + 1;
        let mut acc: Option<Tensor> = None;
        for k in 0..kt {
            let frames = if st == 1 {
                xf.narrow(1, k, t_out)?
            } else {
                let idx: Vec<u32> = (0..t_out).map(|i| (i * st + k) as u32).collect();
                xf.index_select(&Tensor::new(idx, x.device())?, 1)?
            };
            let frames = frames.reshape((b * t_out, c, h, w))?;
            let y = frames.conv2d(&self.taps[k], kh / 2, ss, 1, 1)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let y = acc.expect("kt >= 1");
        let (_, o, ho, wo) = y.dims4()?;
        y.reshape((b, t_out, o, ho, wo))?
            .permute((0, 2, 1, 3, 4))?
            .broadcast_add(&per_channel(&self.bias)?)
    }
}

/// diffusers' `PixArtAlphaCombinedTimestepSizeEmbeddings(dim, 0)`: a 256-wide
/// sinusoid and a SiLU MLP (`timestep_embedder.linear_1/2`).
#[derive(Debug, Clone)]
pub struct TimeEmbedder {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimeEmbedder {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("timestep_embedder");
        Ok(Self {
            linear_1: candle_nn::linear(256, dim, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear(dim, dim, vb.pp("linear_2"))?,
        })
    }

    /// `t`: `[B]` -> `[B, dim]`.
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        // The sinusoid in f32, then the MLP in the weights' dtype (diffusers' hidden_dtype).
        let e = timestep_sinusoid(t, 256)?.to_dtype(self.linear_1.weight().dtype())?;
        self.linear_2.forward(&self.linear_1.forward(&e)?.silu()?)
    }
}

/// diffusers' `LTXVideoResnetBlock3d`.
#[derive(Debug, Clone)]
pub struct ResnetBlock3d {
    conv1: CausalConv3d,
    conv2: CausalConv3d,
    /// LayerNorm (weight, bias) and 1x1x1 conv of the shortcut, when the width changes.
    shortcut: Option<((Tensor, Tensor), CausalConv3d)>,
    per_channel_scale: Option<(Tensor, Tensor)>,
    scale_shift_table: Option<Tensor>,
    eps: f64,
}

impl ResnetBlock3d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        eps: f64,
        causal: bool,
        inject_noise: bool,
        timestep_conditioning: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv1 = CausalConv3d::new(in_c, out_c, 3, (1, 1, 1), causal, vb.pp("conv1"))?;
        let conv2 = CausalConv3d::new(out_c, out_c, 3, (1, 1, 1), causal, vb.pp("conv2"))?;
        let shortcut = if in_c != out_c {
            let n = vb.pp("norm3");
            let norm = (n.get(in_c, "weight")?, n.get(in_c, "bias")?);
            Some((
                norm,
                CausalConv3d::new(in_c, out_c, 1, (1, 1, 1), causal, vb.pp("conv_shortcut"))?,
            ))
        } else {
            None
        };
        let per_channel_scale = if inject_noise {
            Some((
                vb.get((in_c, 1, 1), "per_channel_scale1")?,
                vb.get((in_c, 1, 1), "per_channel_scale2")?,
            ))
        } else {
            None
        };
        let scale_shift_table = if timestep_conditioning {
            Some(vb.get((4, in_c), "scale_shift_table")?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            shortcut,
            per_channel_scale,
            scale_shift_table,
            eps,
        })
    }

    /// The block with norms, modulation and SiLU fused into the convolutions'
    /// input copy and the residual into the second one's output.
    fn forward_fused(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mods: Option<Vec<Vec<f32>>> = match &self.scale_shift_table {
            None => None,
            Some(table) => {
                let Some(temb) = temb else {
                    bail!("ResnetBlock3d: timestep conditioning needs a timestep")
                };
                let (four, c) = table.dims2()?;
                let b = temb.dim(0)?;
                let m = temb
                    .reshape((b, four, c))?
                    .broadcast_add(&table.unsqueeze(0)?.to_dtype(temb.dtype())?)?
                    .to_dtype(DType::F32)?;
                Some(
                    (0..4)
                        .map(|i| m.narrow(1, i, 1)?.flatten_all()?.to_vec1::<f32>())
                        .collect::<Result<Vec<_>>>()?,
                )
            }
        };
        let m1 = mods.as_ref().map(|m| (&m[0][..], &m[1][..]));
        let m2 = mods.as_ref().map(|m| (&m[2][..], &m[3][..]));
        let residual = match &self.shortcut {
            None => x.clone(),
            Some(((w, b), conv)) => {
                let w = w.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let b = b.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let pro = Prologue::LayerNorm { eps: self.eps as f32, weight: &w, bias: &b };
                conv.forward_fused(x, pro, None)?
            }
        };
        let pro1 = Prologue::RmsNormSilu { eps: 1e-8, modulation: m1 };
        let h = self.conv1.forward_fused(x, pro1, None)?;
        let pro2 = Prologue::RmsNormSilu { eps: 1e-8, modulation: m2 };
        self.conv2.forward_fused(&h, pro2, Some(&residual))
    }

    fn add_noise(h: &Tensor, scale: &Tensor, noise: &mut NoiseGen) -> Result<Tensor> {
        let (_, _, _, hh, ww) = h.dims5()?;
        match noise.spatial(hh, ww, h.device())? {
            None => Ok(h.clone()),
            // [C,1,1] * [1,H,W] -> [1, C, 1, H, W]
            Some(n) => h.broadcast_add(
                &scale
                    .broadcast_mul(&n.unsqueeze(0)?)?
                    .unsqueeze(0)?
                    .unsqueeze(2)?,
            ),
        }
    }

    /// `temb`: `[B, 4 * in_channels]` when timestep-conditioned.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: Option<&Tensor>,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let shortcut_fast = match &self.shortcut {
            None => true,
            Some((_, c)) => c.is_fast(),
        };
        if self.per_channel_scale.is_none()
            && self.conv1.is_fast()
            && self.conv2.is_fast()
            && shortcut_fast
        {
            return self.forward_fused(x, temb);
        }
        let mut h = rms_norm_c(x, 1e-8)?;
        let mods = match &self.scale_shift_table {
            None => None,
            Some(table) => {
                let Some(temb) = temb else {
                    bail!("ResnetBlock3d: timestep conditioning needs a timestep")
                };
                let (four, c) = table.dims2()?;
                let b = temb.dim(0)?;
                let m = temb
                    .reshape((b, four, c))?
                    .broadcast_add(&table.unsqueeze(0)?)?;
                let get = |i: usize| m.narrow(1, i, 1)?.reshape((b, c, 1, 1, 1));
                Some([get(0)?, get(1)?, get(2)?, get(3)?])
            }
        };
        if let Some([shift1, scale1, _, _]) = &mods {
            h = h.broadcast_mul(&(scale1 + 1.0)?)?.broadcast_add(shift1)?;
        }
        h = self.conv1.forward(&h.silu()?)?;
        if let Some((s1, _)) = &self.per_channel_scale {
            h = Self::add_noise(&h, s1, noise)?;
        }
        h = rms_norm_c(&h, 1e-8)?;
        if let Some([_, _, shift2, scale2]) = &mods {
            h = h.broadcast_mul(&(scale2 + 1.0)?)?.broadcast_add(shift2)?;
        }
        h = self.conv2.forward(&h.silu()?)?;
        if let Some((_, s2)) = &self.per_channel_scale {
            h = Self::add_noise(&h, s2, noise)?;
        }
        let residual = match &self.shortcut {
            None => x.clone(),
            Some(((w, b), conv)) => {
                let mean = x.mean_keepdim(1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(1)?;
                let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                let xn = xn
                    .broadcast_mul(&per_channel(w)?)?
                    .broadcast_add(&per_channel(b)?)?;
                conv.forward(&xn)?
            }
        };
        h + residual
    }
}

/// diffusers' `LTXVideoDownsampler3d` (0.9.5+): conv then space-to-depth, plus
/// the space-to-depth input averaged over channel groups.
#[derive(Debug, Clone)]
pub struct Downsampler3d {
    stride: (usize, usize, usize),
    group_size: usize,
    conv: CausalConv3d,
}

impl Downsampler3d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        stride: (usize, usize, usize),
        causal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let s = stride.0 * stride.1 * stride.2;
        let group_size = in_c * s / out_c;
        let conv = CausalConv3d::new(in_c, out_c / s, 3, (1, 1, 1), causal, vb.pp("conv"))?;
        Ok(Self {
            stride,
            group_size,
            conv,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.stride.0 > 1 {
            Tensor::cat(&[&x.narrow(2, 0, self.stride.0 - 1)?, x], 2)?
        } else {
            x.clone()
        };
        let p = super::profile::scope("enc.down.residual");
        let r = space_to_depth(&x, self.stride)?;
        let (b, c, t, h, w) = r.dims5()?;
        let r = r
            .reshape(vec![b, c / self.group_size, self.group_size, t, h, w])?
            .mean(2)?;
        drop(p);
        let y = {
            let _p = super::profile::scope("enc.down.conv");
            self.conv.forward(&x)?
        };
        let _p = super::profile::scope("enc.down.s2d_add");
        space_to_depth(&y, self.stride)? + r
    }
}

/// diffusers' `LTXVideoUpsampler3d`: conv then depth-to-space by `stride`,
/// dropping the first `stride_t - 1` frames, plus (with `residual`) the
/// depth-to-space input tiled over channels.
#[derive(Debug, Clone)]
pub struct Upsampler3d {
    stride: (usize, usize, usize),
    residual: bool,
    upscale_factor: usize,
    conv: CausalConv3d,
}

impl Upsampler3d {
    pub fn new(
        in_c: usize,
        stride: (usize, usize, usize),
        causal: bool,
        residual: bool,
        upscale_factor: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out_c = in_c * stride.0 * stride.1 * stride.2 / upscale_factor;
        let conv = CausalConv3d::new(in_c, out_c, 3, (1, 1, 1), causal, vb.pp("conv"))?;
        Ok(Self {
            stride,
            residual,
            upscale_factor,
            conv,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let drop = self.stride.0 - 1;
        if self.stride == (2, 2, 2) {
            // Depth-to-space, frame drop and residual fused into the conv's output.
            let scatter = Scatter::DepthToSpace { drop, residual: self.residual };
            if let Some(y) = self.conv.forward_scatter(x, Prologue::None, scatter)? {
                return Ok(y);
            }
        }
        let h = depth_to_space(&self.conv.forward(x)?, self.stride)?;
        let t = h.dim(2)?;
        let h = h.narrow(2, drop, t - drop)?;
        if !self.residual {
            return Ok(h);
        }
        let repeats = self.stride.0 * self.stride.1 * self.stride.2 / self.upscale_factor;
        let r = depth_to_space(x, self.stride)?.repeat((1, repeats, 1, 1, 1))?;
        h + r.narrow(2, drop, t - drop)?
    }
}

#[derive(Debug, Clone)]
enum Downsampler {
    Conv(CausalConv3d),
    Pixel(Downsampler3d),
}

/// diffusers' `LTXVideoDownBlock3D` (0.9.0/0.9.1) or `LTXVideo095DownBlock3D`
/// (0.9.5+): resnets, an optional downsampler, and (0.9.0 only) a widening resnet.
#[derive(Debug, Clone)]
pub struct DownBlock3d {
    resnets: Vec<ResnetBlock3d>,
    downsampler: Option<Downsampler>,
    conv_out: Option<ResnetBlock3d>,
}

impl DownBlock3d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        block_type: &str,
        in_c: usize,
        out_c: usize,
        num_layers: usize,
        eps: f64,
        spatio_temporal_scale: bool,
        causal: bool,
        downsample_type: &str,
        vb: VarBuilder,
    ) -> Result<Self> {
        let is_095 = match block_type {
            "LTXVideoDownBlock3D" => false,
            "LTXVideo095DownBlock3D" => true,
            other => bail!("unknown down block type {other}"),
        };
        let resnets = (0..num_layers)
            .map(|i| {
                ResnetBlock3d::new(
                    in_c,
                    in_c,
                    eps,
                    causal,
                    false,
                    false,
                    vb.pp(format!("resnets.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let vd = vb.pp("downsamplers.0");
        let downsampler = if !spatio_temporal_scale {
            None
        } else if !is_095 || downsample_type == "conv" {
            // The 0.9.0 block always downsamples by a stride-2 conv.
            Some(Downsampler::Conv(CausalConv3d::new(
                in_c,
                in_c,
                3,
                (2, 2, 2),
                causal,
                vd,
            )?))
        } else {
            let stride = match downsample_type {
                "spatial" => (1, 2, 2),
                "temporal" => (2, 1, 1),
                "spatiotemporal" => (2, 2, 2),
                other => bail!("unknown downsample type {other}"),
            };
            Some(Downsampler::Pixel(Downsampler3d::new(
                in_c, out_c, stride, causal, vd,
            )?))
        };
        let conv_out = if !is_095 && in_c != out_c {
            Some(ResnetBlock3d::new(
                in_c,
                out_c,
                eps,
                causal,
                false,
                false,
                vb.pp("conv_out"),
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            downsampler,
            conv_out,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut noise = NoiseGen::off();
        let mut h = x.clone();
        let p = super::profile::scope("enc.resnets");
        for r in &self.resnets {
            h = r.forward(&h, None, &mut noise)?;
        }
        drop(p);
        h = match &self.downsampler {
            None => h,
            Some(Downsampler::Conv(c)) => c.forward(&h)?,
            Some(Downsampler::Pixel(d)) => d.forward(&h)?,
        };
        if let Some(c) = &self.conv_out {
            h = c.forward(&h, None, &mut noise)?;
        }
        Ok(h)
    }
}

/// diffusers' `LTXVideoMidBlock3d`.
#[derive(Debug, Clone)]
pub struct MidBlock3d {
    time_embedder: Option<TimeEmbedder>,
    resnets: Vec<ResnetBlock3d>,
}

impl MidBlock3d {
    pub fn new(
        c: usize,
        num_layers: usize,
        eps: f64,
        causal: bool,
        inject_noise: bool,
        timestep_conditioning: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let time_embedder = if timestep_conditioning {
            Some(TimeEmbedder::new(c * 4, vb.pp("time_embedder"))?)
        } else {
            None
        };
        let resnets = (0..num_layers)
            .map(|i| {
                ResnetBlock3d::new(
                    c,
                    c,
                    eps,
                    causal,
                    inject_noise,
                    timestep_conditioning,
                    vb.pp(format!("resnets.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time_embedder,
            resnets,
        })
    }

    /// `temb`: the (scaled) timestep `[B]` when timestep-conditioned.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: Option<&Tensor>,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let emb = match (&self.time_embedder, temb) {
            (Some(e), Some(t)) => Some(e.forward(t)?),
            (Some(_), None) => bail!("MidBlock3d: timestep conditioning needs a timestep"),
            (None, t) => t.cloned(),
        };
        let mut h = x.clone();
        for r in &self.resnets {
            h = r.forward(&h, emb.as_ref(), noise)?;
        }
        Ok(h)
    }
}

/// diffusers' `LTXVideoUpBlock3d`.
#[derive(Debug, Clone)]
pub struct UpBlock3d {
    time_embedder: Option<TimeEmbedder>,
    conv_in: Option<ResnetBlock3d>,
    upsampler: Option<Upsampler3d>,
    resnets: Vec<ResnetBlock3d>,
}

impl UpBlock3d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_c: usize,
        out_c: usize,
        num_layers: usize,
        eps: f64,
        spatio_temporal_scale: bool,
        causal: bool,
        inject_noise: bool,
        timestep_conditioning: bool,
        upsample_residual: bool,
        upscale_factor: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let tc = timestep_conditioning;
        let time_embedder = if tc {
            Some(TimeEmbedder::new(in_c * 4, vb.pp("time_embedder"))?)
        } else {
            None
        };
        let conv_in = if in_c != out_c {
            Some(ResnetBlock3d::new(
                in_c,
                out_c,
                eps,
                causal,
                inject_noise,
                tc,
                vb.pp("conv_in"),
            )?)
        } else {
            None
        };
        let upsampler = if spatio_temporal_scale {
            Some(Upsampler3d::new(
                out_c * upscale_factor,
                (2, 2, 2),
                causal,
                upsample_residual,
                upscale_factor,
                vb.pp("upsamplers.0"),
            )?)
        } else {
            None
        };
        let resnets = (0..num_layers)
            .map(|i| {
                ResnetBlock3d::new(
                    out_c,
                    out_c,
                    eps,
                    causal,
                    inject_noise,
                    tc,
                    vb.pp(format!("resnets.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time_embedder,
            conv_in,
            upsampler,
            resnets,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        temb: Option<&Tensor>,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        // As in diffusers, the widening resnet sees the raw timestep (it is never
        // timestep-conditioned in released configs).
        if let Some(c) = &self.conv_in {
            h = c.forward(&h, temb, noise)?;
        }
        let emb = match (&self.time_embedder, temb) {
            (Some(e), Some(t)) => Some(e.forward(t)?),
            (Some(_), None) => bail!("UpBlock3d: timestep conditioning needs a timestep"),
            (None, t) => t.cloned(),
        };
        if let Some(u) = &self.upsampler {
            h = u.forward(&h)?;
        }
        for r in &self.resnets {
            h = r.forward(&h, emb.as_ref(), noise)?;
        }
        Ok(h)
    }
}

// ---------------------------------------------------------------- encoder / decoder

/// diffusers' `LTXVideoEncoder3d`.
#[derive(Debug, Clone)]
pub struct Encoder3d {
    patch_size: usize,
    patch_size_t: usize,
    latent_channels: usize,
    conv_in: CausalConv3d,
    down_blocks: Vec<DownBlock3d>,
    mid_block: MidBlock3d,
    conv_out: CausalConv3d,
}

impl Encoder3d {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        // Reused freed buffers instead of fresh zeroed pages per op.
        crate::runtime::tune_allocator();
        let causal = cfg.encoder_causal;
        let eps = cfg.resnet_norm_eps;
        let boc = &cfg.block_out_channels;
        let in_c = cfg.in_channels * cfg.patch_size * cfg.patch_size;
        let mut out_c = boc[0];
        let conv_in = CausalConv3d::new(in_c, out_c, 3, (1, 1, 1), causal, vb.pp("conv_in"))?;
        let is_095 =
            cfg.down_block_types.last().map(String::as_str) == Some("LTXVideo095DownBlock3D");
        let n = boc.len() - usize::from(is_095);
        let mut down_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let inp = out_c;
            out_c = if is_095 || i + 1 < n {
                boc[i + 1]
            } else {
                boc[i]
            };
            let kind = cfg
                .down_block_types
                .get(i)
                .map(String::as_str)
                .unwrap_or("LTXVideoDownBlock3D");
            let ds = cfg
                .downsample_type
                .get(i)
                .map(String::as_str)
                .unwrap_or("conv");
            down_blocks.push(DownBlock3d::new(
                kind,
                inp,
                out_c,
                cfg.layers_per_block[i],
                eps,
                cfg.spatio_temporal_scaling[i],
                causal,
                ds,
                vb.pp(format!("down_blocks.{i}")),
            )?);
        }
        let mid_layers = *cfg.layers_per_block.last().expect("layers_per_block");
        let mid_block = MidBlock3d::new(
            out_c,
            mid_layers,
            eps,
            causal,
            false,
            false,
            vb.pp("mid_block"),
        )?;
        let conv_out = CausalConv3d::new(
            out_c,
            cfg.latent_channels + 1,
            3,
            (1, 1, 1),
            causal,
            vb.pp("conv_out"),
        )?;
        Ok(Self {
            patch_size: cfg.patch_size,
            patch_size_t: cfg.patch_size_t,
            latent_channels: cfg.latent_channels,
            conv_in,
            down_blocks,
            mid_block,
            conv_out,
        })
    }

    /// Video `[B, C, T, H, W]` -> the raw moments `[B, 2 * latent_channels, T', H', W']`:
    /// the mean, then the one log-variance channel repeated (diffusers' layout;
    /// [`split_moments`] makes the distribution).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let (p, pt) = (self.patch_size, self.patch_size_t);
        let x = x
            .reshape(vec![b, c, t / pt, pt, h / p, p, w / p, p])?
            .permute(vec![0, 1, 3, 7, 5, 2, 4, 6])?
            .reshape((b, c * pt * p * p, t / pt, h / p, w / p))?;
        let p = super::profile::scope("enc.conv_in");
        let mut h = self.conv_in.forward(&x)?;
        drop(p);
        for d in &self.down_blocks {
            h = d.forward(&h)?;
        }
        let p = super::profile::scope("enc.mid");
        h = self.mid_block.forward(&h, None, &mut NoiseGen::off())?;
        drop(p);
        let _p = super::profile::scope("enc.conv_out");
        let pro = Prologue::RmsNormSilu { eps: 1e-8, modulation: None };
        h = self.conv_out.forward_fused(&h, pro, None)?;
        let l = self.latent_channels;
        let last = h.narrow(1, l, 1)?.repeat((1, l - 1, 1, 1, 1))?;
        Tensor::cat(&[&h, &last], 1)
    }
}

/// diffusers' `DiagonalGaussianDistribution`: raw moments -> (mean, logvar),
/// logvar clamped to [-30, 20].
pub fn split_moments(h: &Tensor) -> Result<(Tensor, Tensor)> {
    let l = h.dim(1)? / 2;
    Ok((
        h.narrow(1, 0, l)?.contiguous()?,
        h.narrow(1, l, l)?.clamp(-30f32, 20f32)?,
    ))
}

/// diffusers' `LTXVideoDecoder3d`.
#[derive(Debug, Clone)]
pub struct Decoder3d {
    patch_size: usize,
    patch_size_t: usize,
    conv_in: CausalConv3d,
    mid_block: MidBlock3d,
    up_blocks: Vec<UpBlock3d>,
    conv_out: CausalConv3d,
    time_embedder: Option<TimeEmbedder>,
    scale_shift_table: Option<Tensor>,
    timestep_scale_multiplier: Option<Tensor>,
}

impl Decoder3d {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        // Reused freed buffers instead of fresh zeroed pages per op.
        crate::runtime::tune_allocator();
        let causal = cfg.decoder_causal;
        let eps = cfg.resnet_norm_eps;
        let tc = cfg.timestep_conditioning;
        let rev = |v: &[usize]| v.iter().rev().copied().collect::<Vec<_>>();
        let revb = |v: &[bool]| v.iter().rev().copied().collect::<Vec<_>>();
        let boc = rev(&cfg.decoder_block_out_channels);
        let scaling = revb(&cfg.decoder_spatio_temporal_scaling);
        let layers = rev(&cfg.decoder_layers_per_block);
        let noise = revb(&cfg.decoder_inject_noise);
        let residual = revb(&cfg.upsample_residual);
        let factor = rev(&cfg.upsample_factor);
        let mut out_c = boc[0];
        let conv_in = CausalConv3d::new(
            cfg.latent_channels,
            out_c,
            3,
            (1, 1, 1),
            causal,
            vb.pp("conv_in"),
        )?;
        let mid_block = MidBlock3d::new(
            out_c,
            layers[0],
            eps,
            causal,
            noise[0],
            tc,
            vb.pp("mid_block"),
        )?;
        let mut up_blocks = Vec::with_capacity(boc.len());
        for i in 0..boc.len() {
            let inp = out_c / factor[i];
            out_c = boc[i] / factor[i];
            up_blocks.push(UpBlock3d::new(
                inp,
                out_c,
                layers[i + 1],
                eps,
                scaling[i],
                causal,
                noise[i + 1],
                tc,
                residual[i],
                factor[i],
                vb.pp(format!("up_blocks.{i}")),
            )?);
        }
        let p = cfg.patch_size;
        let conv_out = CausalConv3d::new(
            out_c,
            cfg.out_channels * p * p,
            3,
            (1, 1, 1),
            causal,
            vb.pp("conv_out"),
        )?;
        let (time_embedder, scale_shift_table, timestep_scale_multiplier) = if tc {
            (
                Some(TimeEmbedder::new(out_c * 2, vb.pp("time_embedder"))?),
                Some(vb.get((2, out_c), "scale_shift_table")?),
                Some(vb.get((), "timestep_scale_multiplier")?),
            )
        } else {
            (None, None, None)
        };
        Ok(Self {
            patch_size: p,
            patch_size_t: cfg.patch_size_t,
            conv_in,
            mid_block,
            up_blocks,
            conv_out,
            time_embedder,
            scale_shift_table,
            timestep_scale_multiplier,
        })
    }

    /// Latents `[B, C, T, H, W]` (and the decode timestep `[B]` when
    /// timestep-conditioned) -> video `[B, out_channels, T', H', W']`.
    pub fn forward(
        &self,
        z: &Tensor,
        temb: Option<&Tensor>,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let mut h = self.conv_in.forward(z)?;
        let temb = match (&self.timestep_scale_multiplier, temb) {
            (Some(m), Some(t)) => Some(t.to_dtype(m.dtype())?.broadcast_mul(m)?),
            (Some(_), None) => bail!("Decoder3d: timestep conditioning needs a decode timestep"),
            (None, _) => None,
        };
        h = self.mid_block.forward(&h, temb.as_ref(), noise)?;
        for u in &self.up_blocks {
            h = u.forward(&h, temb.as_ref(), noise)?;
        }
        // Final norm, (timestep shift/scale), SiLU: fused into conv_out's input.
        let mods = match (&self.time_embedder, &self.scale_shift_table, &temb) {
            (Some(e), Some(table), Some(t)) => {
                let (two, c) = table.dims2()?;
                let b = h.dim(0)?;
                let m = e
                    .forward(t)?
                    .reshape((b, two, c))?
                    .broadcast_add(&table.unsqueeze(0)?)?
                    .to_dtype(DType::F32)?;
                let shift = m.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
                let scale = m.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?;
                Some((shift, scale))
            }
            _ => None,
        };
        let pro = Prologue::RmsNormSilu {
            eps: 1e-8,
            modulation: mods.as_ref().map(|(a, b)| (&a[..], &b[..])),
        };
        let (p, pt) = (self.patch_size, self.patch_size_t);
        if pt == 1 {
            // The un-patchify fused into conv_out's output.
            if let Some(y) = self.conv_out.forward_scatter(&h, pro, Scatter::Unpatchify { p })? {
                return Ok(y);
            }
        }
        h = self.conv_out.forward_fused(&h, pro, None)?;
        let (b, c, t, hh, ww) = h.dims5()?;
        h.reshape(vec![b, c / (pt * p * p), pt, p, p, t, hh, ww])?
            .permute(vec![0, 1, 5, 2, 6, 4, 7, 3])?
            .reshape((b, c / (pt * p * p), t * pt, hh * p, ww * p))
    }
}

// ---------------------------------------------------------------- the autoencoder

/// Tiling parameters, in sample pixels / frames, as diffusers' `enable_tiling`
/// (defaults are diffusers'). `spatial` is diffusers' `use_tiling`; `temporal`
/// is its `use_framewise_decoding`, which diffusers' encoder also consults.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiling {
    pub spatial: bool,
    pub temporal: bool,
    pub tile_sample_min_height: usize,
    pub tile_sample_min_width: usize,
    pub tile_sample_min_num_frames: usize,
    pub tile_sample_stride_height: usize,
    pub tile_sample_stride_width: usize,
    pub tile_sample_stride_num_frames: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            spatial: true,
            temporal: false,
            tile_sample_min_height: 512,
            tile_sample_min_width: 512,
            tile_sample_min_num_frames: 16,
            tile_sample_stride_height: 448,
            tile_sample_stride_width: 448,
            tile_sample_stride_num_frames: 8,
        }
    }
}

/// diffusers' `AutoencoderKLLTXVideo`.
#[derive(Debug, Clone)]
pub struct AutoencoderKLLTXVideo {
    pub encoder: Encoder3d,
    pub decoder: Decoder3d,
    pub latents_mean: Tensor,
    pub latents_std: Tensor,
    pub config: Config,
    /// Spatial / temporal tiling (None: off, diffusers' default).
    pub tiling: Option<Tiling>,
}

impl AutoencoderKLLTXVideo {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            encoder: Encoder3d::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder3d::new(cfg, vb.pp("decoder"))?,
            latents_mean: vb.get(cfg.latent_channels, "latents_mean")?,
            latents_std: vb.get(cfg.latent_channels, "latents_std")?,
            config: cfg.clone(),
            tiling: None,
        })
    }

    pub fn enable_tiling(&mut self, tiling: Tiling) {
        self.tiling = Some(tiling);
    }

    /// Video in [-1, 1] `[B, C, 8k+1, H, W]` -> latent distribution (mean, logvar).
    pub fn encode_dist(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        split_moments(&self.encode_moments(x)?)
    }

    /// The latent mean (the posterior's mode), unnormalised.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode_dist(x)?.0)
    }

    /// diffusers' `_encode`: raw moments, tiled when enabled and large enough.
    fn encode_moments(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, t, h, w) = x.dims5()?;
        match &self.tiling {
            Some(tl) if tl.temporal && t > tl.tile_sample_min_num_frames => {
                self.temporal_tiled_encode(x, tl)
            }
            Some(tl)
                if tl.spatial
                    && (w > tl.tile_sample_min_width || h > tl.tile_sample_min_height) =>
            {
                self.tiled_encode(x, tl)
            }
            _ => self.encoder.forward(x),
        }
    }

    /// Unnormalised latents -> video; `timestep` `[B]` (e.g. 0.05) for
    /// timestep-conditioned decoders; no injected noise.
    pub fn decode(&self, z: &Tensor, timestep: Option<&Tensor>) -> Result<Tensor> {
        self.decode_with_noise(z, timestep, None)
    }

    /// As [`Self::decode`], with the decoder's injected noise (for configs with
    /// `decoder_inject_noise`) drawn from `noise_seed` (None: zero noise).
    pub fn decode_with_noise(
        &self,
        z: &Tensor,
        timestep: Option<&Tensor>,
        noise_seed: Option<u64>,
    ) -> Result<Tensor> {
        let mut noise = match noise_seed {
            Some(s) => NoiseGen::seeded(s),
            None => NoiseGen::off(),
        };
        let (_, _, t, h, w) = z.dims5()?;
        let r = self.config.spatial_compression();
        let rt = self.config.temporal_compression();
        match &self.tiling {
            Some(tl) if tl.temporal && t > tl.tile_sample_min_num_frames / rt => {
                self.temporal_tiled_decode(z, timestep, tl, &mut noise)
            }
            Some(tl)
                if tl.spatial
                    && (w > tl.tile_sample_min_width / r || h > tl.tile_sample_min_height / r) =>
            {
                self.tiled_decode(z, timestep, tl, &mut noise)
            }
            _ => self.decoder.forward(z, timestep, &mut noise),
        }
    }

    /// diffusers' `tiled_encode`: overlapping spatial tiles, seams blended linearly.
    fn tiled_encode(&self, x: &Tensor, t: &Tiling) -> Result<Tensor> {
        let (_, _, _, h, w) = x.dims5()?;
        let r = self.config.spatial_compression();
        let (min_h, min_w) = (t.tile_sample_min_height / r, t.tile_sample_min_width / r);
        let (st_h, st_w) = (
            t.tile_sample_stride_height / r,
            t.tile_sample_stride_width / r,
        );
        let mut rows = Vec::new();
        for i in (0..h).step_by(t.tile_sample_stride_height) {
            let mut row = Vec::new();
            for j in (0..w).step_by(t.tile_sample_stride_width) {
                let tile = x
                    .narrow(3, i, t.tile_sample_min_height.min(h - i))?
                    .narrow(4, j, t.tile_sample_min_width.min(w - j))?;
                row.push(self.encoder.forward(&tile)?);
            }
            rows.push(row);
        }
        blend_tiles(&rows, min_h - st_h, min_w - st_w, st_h, st_w, h / r, w / r)
    }

    /// diffusers' `tiled_decode`: overlapping latent tiles, seams blended linearly
    /// over `min - stride` sample pixels.
    fn tiled_decode(
        &self,
        z: &Tensor,
        timestep: Option<&Tensor>,
        t: &Tiling,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let (_, _, _, h, w) = z.dims5()?;
        let r = self.config.spatial_compression();
        let (min_h, min_w) = (t.tile_sample_min_height / r, t.tile_sample_min_width / r);
        let (st_h, st_w) = (
            t.tile_sample_stride_height / r,
            t.tile_sample_stride_width / r,
        );
        let mut rows = Vec::new();
        for i in (0..h).step_by(st_h) {
            let mut row = Vec::new();
            for j in (0..w).step_by(st_w) {
                let tile = z
                    .narrow(3, i, min_h.min(h - i))?
                    .narrow(4, j, min_w.min(w - j))?;
                row.push(self.decoder.forward(&tile, timestep, noise)?);
            }
            rows.push(row);
        }
        blend_tiles(
            &rows,
            t.tile_sample_min_height - t.tile_sample_stride_height,
            t.tile_sample_min_width - t.tile_sample_stride_width,
            t.tile_sample_stride_height,
            t.tile_sample_stride_width,
            h * r,
            w * r,
        )
    }

    /// diffusers' `_temporal_tiled_encode`: overlapping runs of frames (each
    /// one frame longer than the tile, so that tiles after the first drop their
    /// causal first latent frame), blended over `min - stride` latent frames.
    fn temporal_tiled_encode(&self, x: &Tensor, t: &Tiling) -> Result<Tensor> {
        let (_, _, f, h, w) = x.dims5()?;
        let rt = self.config.temporal_compression();
        let latent_frames = (f - 1) / rt + 1;
        let min_t = t.tile_sample_min_num_frames / rt;
        let st_t = t.tile_sample_stride_num_frames / rt;
        let mut tiles = Vec::new();
        for i in (0..f).step_by(t.tile_sample_stride_num_frames) {
            let tile = x.narrow(2, i, (t.tile_sample_min_num_frames + 1).min(f - i))?;
            let mut enc =
                if t.spatial && (h > t.tile_sample_min_height || w > t.tile_sample_min_width) {
                    self.tiled_encode(&tile, t)?
                } else {
                    self.encoder.forward(&tile)?
                };
            if i > 0 {
                let n = enc.dim(2)?;
                enc = enc.narrow(2, 1, n - 1)?;
            }
            tiles.push(enc);
        }
        blend_frames(&tiles, min_t - st_t, st_t, latent_frames)
    }

    /// diffusers' `_temporal_tiled_decode`: overlapping runs of latent frames
    /// (one longer than the tile; tiles after the first drop their last
    /// frame), blended over `min - stride` sample frames.
    fn temporal_tiled_decode(
        &self,
        z: &Tensor,
        timestep: Option<&Tensor>,
        t: &Tiling,
        noise: &mut NoiseGen,
    ) -> Result<Tensor> {
        let (_, _, f, _, _) = z.dims5()?;
        let r = self.config.spatial_compression();
        let rt = self.config.temporal_compression();
        let sample_frames = (f - 1) * rt + 1;
        let (min_h, min_w) = (t.tile_sample_min_height / r, t.tile_sample_min_width / r);
        let min_t = t.tile_sample_min_num_frames / rt;
        let st_t = t.tile_sample_stride_num_frames / rt;
        let mut tiles = Vec::new();
        for i in (0..f).step_by(st_t) {
            let tile = z.narrow(2, i, (min_t + 1).min(f - i))?;
            let (th, tw) = (tile.dim(3)?, tile.dim(4)?);
            let mut dec = if t.spatial && (tw > min_w || th > min_h) {
                self.tiled_decode(&tile, timestep, t, noise)?
            } else {
                self.decoder.forward(&tile, timestep, noise)?
            };
            if i > 0 {
                let n = dec.dim(2)?;
                dec = dec.narrow(2, 0, n - 1)?;
            }
            tiles.push(dec);
        }
        blend_frames(
            &tiles,
            t.tile_sample_min_num_frames - t.tile_sample_stride_num_frames,
            t.tile_sample_stride_num_frames,
            sample_frames,
        )
    }

    /// The pipelines' `_normalize_latents` with this VAE's statistics.
    pub fn normalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        normalize_latents(
            latents,
            &self.latents_mean,
            &self.latents_std,
            self.config.scaling_factor,
        )
    }

    /// The pipelines' `_denormalize_latents` with this VAE's statistics.
    pub fn denormalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        denormalize_latents(
            latents,
            &self.latents_mean,
            &self.latents_std,
            self.config.scaling_factor,
        )
    }
}

/// Linear cross-fade of the last `extent` entries of `a` into the first of `b`
/// along `dim` (diffusers' `blend_v` / `blend_h` / `blend_t`).
fn blend(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let extent = extent.min(a.dim(dim)?).min(b.dim(dim)?);
    if extent == 0 {
        return Ok(b.clone());
    }
    let n = b.dim(dim)?;
    let a_tail = a.narrow(dim, a.dim(dim)? - extent, extent)?;
    let b_head = b.narrow(dim, 0, extent)?;
    let wv: Vec<f32> = (0..extent).map(|y| y as f32 / extent as f32).collect();
    let mut shape = vec![1usize; b.rank()];
    shape[dim] = extent;
    let wb = Tensor::from_vec(wv, shape, b.device())?;
    let wa = (1.0 - &wb)?;
    let head = (a_tail.broadcast_mul(&wa)? + b_head.broadcast_mul(&wb)?)?;
    if extent == n {
        Ok(head)
    } else {
        Tensor::cat(&[&head, &b.narrow(dim, extent, n - extent)?], dim)
    }
}

/// diffusers' tile assembly: blend each tile with the one above and the one to
/// its left, keep its top-left `stride` part, concatenate and crop.
fn blend_tiles(
    rows: &[Vec<Tensor>],
    blend_h: usize,
    blend_w: usize,
    stride_h: usize,
    stride_w: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Tensor> {
    let mut out_rows = Vec::with_capacity(rows.len());
    // diffusers blends in place, so the neighbours above and to the left are
    // read already blended.
    let mut blended: Vec<Vec<Tensor>> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut brow: Vec<Tensor> = Vec::with_capacity(row.len());
        let mut out = Vec::with_capacity(row.len());
        for (j, tile) in row.iter().enumerate() {
            let mut tile = tile.clone();
            if i > 0 {
                tile = blend(&blended[i - 1][j], &tile, blend_h, 3)?;
            }
            if j > 0 {
                tile = blend(&brow[j - 1], &tile, blend_w, 4)?;
            }
            let th = stride_h.min(tile.dim(3)?);
            let tw = stride_w.min(tile.dim(4)?);
            out.push(tile.narrow(3, 0, th)?.narrow(4, 0, tw)?);
            brow.push(tile);
        }
        out_rows.push(Tensor::cat(&out, 4)?);
        blended.push(brow);
    }
    let all = Tensor::cat(&out_rows, 3)?;
    let (h, w) = (all.dim(3)?, all.dim(4)?);
    all.narrow(3, 0, out_h.min(h))?.narrow(4, 0, out_w.min(w))
}

/// diffusers' temporal tile assembly: blend each run of frames with the
/// (blended) previous one, keep `stride` frames (`stride + 1` of the first),
/// concatenate and crop to `out_t`.
fn blend_frames(tiles: &[Tensor], extent: usize, stride: usize, out_t: usize) -> Result<Tensor> {
    let mut blended: Vec<Tensor> = Vec::with_capacity(tiles.len());
    let mut out = Vec::with_capacity(tiles.len());
    for (i, tile) in tiles.iter().enumerate() {
        let (tile, keep) = if i > 0 {
            (blend(&blended[i - 1], tile, extent, 2)?, stride)
        } else {
            (tile.clone(), stride + 1)
        };
        let n = tile.dim(2)?;
        if n.min(keep) > 0 {
            out.push(tile.narrow(2, 0, n.min(keep))?);
        }
        blended.push(tile);
    }
    let all = Tensor::cat(&out, 2)?;
    let n = all.dim(2)?;
    all.narrow(2, 0, out_t.min(n))
}

/// The LTX pipelines' `_normalize_latents`: `(z - mean) * scaling / std` per channel.
pub fn normalize_latents(
    latents: &Tensor,
    mean: &Tensor,
    std: &Tensor,
    scaling_factor: f64,
) -> Result<Tensor> {
    latents
        .broadcast_sub(&per_channel(mean)?)?
        .affine(scaling_factor, 0.0)?
        .broadcast_div(&per_channel(std)?)
}

/// The LTX pipelines' `_denormalize_latents`: `z * std / scaling + mean` per channel.
pub fn denormalize_latents(
    latents: &Tensor,
    mean: &Tensor,
    std: &Tensor,
    scaling_factor: f64,
) -> Result<Tensor> {
    latents
        .broadcast_mul(&per_channel(std)?)?
        .affine(1.0 / scaling_factor, 0.0)?
        .broadcast_add(&per_channel(mean)?)
}

// ---------------------------------------------------------------- tensor manifest

/// A `VarBuilder` backend that hands out zero-stride zero tensors and records
/// every request: building the model on it lists exactly the tensors that
/// [`AutoencoderKLLTXVideo::new`] loads, without allocating them.
type Requests = Arc<Mutex<Vec<(String, Vec<usize>)>>>;

struct Recorder(Requests);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.0
            .lock()
            .expect("recorder")
            .push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        bail!("tensor_shapes: unchecked get of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Every parameter/buffer name and shape that [`AutoencoderKLLTXVideo::new`]
/// loads for `cfg` (diffusers' `state_dict()` names), in load order.
pub fn tensor_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let vb = VarBuilder::from_backend(Box::new(Recorder(seen.clone())), DType::F32, Device::Cpu);
    AutoencoderKLLTXVideo::new(cfg, vb)
        .expect("building on the recorder cannot fail for a valid config");
    seen.lock().expect("recorder").clone()
}
