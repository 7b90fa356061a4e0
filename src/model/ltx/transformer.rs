//! The LTX-Video diffusion transformer (diffusers' `LTXVideoTransformer3DModel`).
//!
//! Architecture, in short:
//!
//! * Input: video latents already cut into spacetime patches and flattened to
//!   tokens, `[B, seq, in_channels]`, with `seq = frames * height * width` of the
//!   latent grid in (frame, row, column) order. `proj_in` lifts every token to
//!   the model width `inner_dim = num_attention_heads * attention_head_dim`.
//! * Time: the diffusion timestep (0..1000) goes through a 256-wide sinusoidal
//!   embedding (cos first), a two-layer SiLU MLP (`time_embed.emb.timestep_embedder`),
//!   giving `embedded_timestep`; then SiLU and `time_embed.linear` expand it to
//!   six modulation vectors per block (PixArt-alpha's adaLN-single: one
//!   projection shared by all blocks, each block adds its own learned
//!   `scale_shift_table`). Timesteps may be one per sample (`[B]`) or one per
//!   token (`[B, seq]`, as the conditioning pipeline passes, with conditioning
//!   tokens at t = 0), in which case every token gets its own modulation;
//!   the time MLP and each block's modulation run once per distinct timestep
//!   ([`TokenTemb`]), as the values per token are a handful.
//! * Text: T5 embeddings `[B, text_len, caption_channels]` are projected to the
//!   model width by a GELU(tanh) MLP (`caption_projection`). The 0/1 text mask
//!   becomes an additive bias `(1 - mask) * -10000` on the cross-attention logits.
//! * Positions: 3-D rotary embeddings over the full model width (not per head).
//!   Each token has a (frame, y, x) coordinate, normalised by (20, 2048, 2048)
//!   after scaling to pixel/second units (`rope_interpolation_scale` =
//!   (vae temporal compression / frame rate, spatial compression, spatial
//!   compression), or explicit `video_coords` already in those units). A
//!   coordinate `c` in [0, 1] is mapped to `2c - 1` and multiplied by
//!   `dim / 6` frequencies geometrically spaced from pi/2 to theta*pi/2; the
//!   three axes are interleaved per frequency, each angle is used for one
//!   (even, odd) channel pair, and `dim % 6` leading channels are left unrotated.
//! * Blocks (`transformer_blocks.N`): RMSNorm (no affine) + shift/scale ->
//!   self-attention (q/k RMSNorm across all heads, rotary on q and k) gated;
//!   cross-attention to the text from the *unnormalised* stream, ungated;
//!   RMSNorm + shift/scale -> GELU(tanh) feed-forward (4x) gated.
//! * Output: LayerNorm (no affine), shift/scale from `embedded_timestep` plus
//!   the model's own `scale_shift_table`, and `proj_out` to `out_channels`
//!   (the predicted velocity per token).
//!
//! Parameter names are diffusers' own, so `diffusion_pytorch_model.safetensors`
//! loads as is; [`Config`] reads diffusers' `transformer/config.json`.
//! Computation happens in the `VarBuilder`'s dtype, with norms, rotary tables
//! and the timestep sinusoids in f32.
//!
//! On the CPU (f32 / bf16) the blocks use [`super::kernels`]: linear layers
//! with fused bias/GELU on AVX-512 (f32) or AMX / AVX-512 BF16 (bf16) with
//! weights repacked at load, attention over chunks of queries (bounded score
//! buffer, fused scale + mask + softmax), and fused RMSNorm + adaLN
//! modulation, q/k norm + rotary embedding and gated residuals. Elsewhere
//! (CUDA) the same computation runs as candle ops, attention chunked too.

use candle_core::{D, DType, Device, Module, Result, Tensor, bail};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::kernels::{self, Act, Linear};
use super::profile;

/// diffusers' `LTXVideoTransformer3DModel` config (`transformer/config.json`).
/// Missing fields take diffusers' defaults, which are LTX-Video 2B's values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub in_channels: usize,
    /// `null` means `in_channels`, as in diffusers.
    pub out_channels: Option<usize>,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub cross_attention_dim: usize,
    pub num_layers: usize,
    pub activation_fn: String,
    pub qk_norm: String,
    pub norm_elementwise_affine: bool,
    pub norm_eps: f64,
    pub caption_channels: usize,
    pub attention_bias: bool,
    pub attention_out_bias: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_channels: 128,
            out_channels: Some(128),
            patch_size: 1,
            patch_size_t: 1,
            num_attention_heads: 32,
            attention_head_dim: 64,
            cross_attention_dim: 2048,
            num_layers: 28,
            activation_fn: "gelu-approximate".to_string(),
            qk_norm: "rms_norm_across_heads".to_string(),
            norm_elementwise_affine: false,
            norm_eps: 1e-6,
            caption_channels: 4096,
            attention_bias: true,
            attention_out_bias: true,
        }
    }
}

impl Config {
    /// LTX-Video 2B (0.9.0 to 0.9.5): diffusers' defaults.
    pub fn ltx_video_2b() -> Self {
        Self::default()
    }

    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        match self.out_channels {
            Some(c) if c > 0 => c,
            _ => self.in_channels,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.qk_norm != "rms_norm_across_heads" {
            bail!(
                "LTX transformer: qk_norm {:?} is not supported (only rms_norm_across_heads)",
                self.qk_norm
            )
        }
        if self.activation_fn != "gelu-approximate" {
            bail!(
                "LTX transformer: activation_fn {:?} is not supported (only gelu-approximate)",
                self.activation_fn
            )
        }
        Ok(())
    }
}

/// Every parameter the model reads, with its shape, in diffusers' state-dict
/// order (what a checkpoint for `cfg` must hold, no more and no less).
pub fn tensor_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let d = cfg.inner_dim();
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| v.push((name, shape));
    let linear =
        |push: &mut dyn FnMut(String, Vec<usize>), p: &str, i: usize, o: usize, bias: bool| {
            push(format!("{p}.weight"), vec![o, i]);
            if bias {
                push(format!("{p}.bias"), vec![o]);
            }
        };
    push("scale_shift_table".into(), vec![2, d]);
    linear(&mut push, "proj_in", cfg.in_channels, d, true);
    linear(
        &mut push,
        "time_embed.emb.timestep_embedder.linear_1",
        TIME_PROJ_DIM,
        d,
        true,
    );
    linear(
        &mut push,
        "time_embed.emb.timestep_embedder.linear_2",
        d,
        d,
        true,
    );
    linear(&mut push, "time_embed.linear", d, 6 * d, true);
    linear(
        &mut push,
        "caption_projection.linear_1",
        cfg.caption_channels,
        d,
        true,
    );
    linear(&mut push, "caption_projection.linear_2", d, d, true);
    for i in 0..cfg.num_layers {
        let b = format!("transformer_blocks.{i}");
        push(format!("{b}.scale_shift_table"), vec![6, d]);
        for (attn, norm, kv_in) in [
            ("attn1", "norm1", d),
            ("attn2", "norm2", cfg.cross_attention_dim),
        ] {
            if cfg.norm_elementwise_affine {
                push(format!("{b}.{norm}.weight"), vec![d]);
            }
            let a = format!("{b}.{attn}");
            push(format!("{a}.norm_q.weight"), vec![d]);
            push(format!("{a}.norm_k.weight"), vec![d]);
            linear(&mut push, &format!("{a}.to_q"), d, d, cfg.attention_bias);
            linear(
                &mut push,
                &format!("{a}.to_k"),
                kv_in,
                d,
                cfg.attention_bias,
            );
            linear(
                &mut push,
                &format!("{a}.to_v"),
                kv_in,
                d,
                cfg.attention_bias,
            );
            linear(
                &mut push,
                &format!("{a}.to_out.0"),
                d,
                d,
                cfg.attention_out_bias,
            );
        }
        linear(&mut push, &format!("{b}.ff.net.0.proj"), d, 4 * d, true);
        linear(&mut push, &format!("{b}.ff.net.2"), 4 * d, d, true);
    }
    linear(&mut push, "proj_out", d, cfg.out_channels(), true);
    v
}

/// Width of the sinusoidal timestep embedding (PixArt-alpha's `time_proj`).
const TIME_PROJ_DIM: usize = 256;

fn linear(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((o, i), "weight")?;
    let bias = if bias { Some(vb.get(o, "bias")?) } else { None };
    Linear::new(weight, bias)
}

/// RMSNorm over the last dimension, in f32, optionally times a weight.
fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = x.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.to_dtype(DType::F32)?)?;
    }
    y.to_dtype(dtype)
}

/// LayerNorm over the last dimension without affine parameters, in f32.
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(dtype)
}

/// `x * (1 + scale) + shift`, with `scale`/`shift` `[B, 1 or seq, D]`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// 3-D rotary position embedding (diffusers' `LTXVideoRotaryPosEmbed`).
#[derive(Debug, Clone)]
pub struct RotaryPosEmbed {
    dim: usize,
    base_num_frames: f32,
    base_height: f32,
    base_width: f32,
    patch_size: usize,
    patch_size_t: usize,
    theta: f64,
}

impl RotaryPosEmbed {
    pub fn new(cfg: &Config) -> Self {
        Self {
            dim: cfg.inner_dim(),
            base_num_frames: 20.0,
            base_height: 2048.0,
            base_width: 2048.0,
            patch_size: cfg.patch_size,
            patch_size_t: cfg.patch_size_t,
            theta: 10000.0,
        }
    }

    /// The `dim / 6` angular frequencies, computed with torch's f32 operations
    /// (`theta ** linspace(0, 1, n) * pi / 2`).
    fn freqs(&self) -> Vec<f32> {
        let n = self.dim / 6;
        let (start, end) = (0f32, 1f32); // log_theta(1), log_theta(theta)
        let step = if n > 1 {
            (end - start) / (n - 1) as f32
        } else {
            0.0
        };
        (0..n)
            .map(|i| {
                // torch.linspace's (scalar) formula: from both ends towards the middle.
                let e = if n == 1 {
                    start
                } else if i < n / 2 {
                    start + step * i as f32
                } else {
                    end - step * (n - 1 - i) as f32
                };
                (self.theta as f32).powf(e) * std::f32::consts::PI / 2.0
            })
            .collect()
    }

    /// Normalised (frame, y, x) coordinates `[B, F*H*W, 3]` of a latent grid.
    pub fn grid(
        &self,
        batch: usize,
        num_frames: usize,
        height: usize,
        width: usize,
        rope_interpolation_scale: Option<[f64; 3]>,
        device: &Device,
    ) -> Result<Tensor> {
        let mut g = Vec::with_capacity(num_frames * height * width * 3);
        for f in 0..num_frames {
            for y in 0..height {
                for x in 0..width {
                    let (mut f, mut y, mut x) = (f as f32, y as f32, x as f32);
                    if let Some(s) = rope_interpolation_scale {
                        f = f * s[0] as f32 * self.patch_size_t as f32 / self.base_num_frames;
                        y = y * s[1] as f32 * self.patch_size as f32 / self.base_height;
                        x = x * s[2] as f32 * self.patch_size as f32 / self.base_width;
                    }
                    g.extend_from_slice(&[f, y, x]);
                }
            }
        }
        let seq = num_frames * height * width;
        Tensor::from_vec(g, (1, seq, 3), device)?.repeat((batch, 1, 1))
    }

    /// Normalised coordinates `[B, seq, 3]` from explicit `video_coords`
    /// `[B, 3, seq]` (frames in seconds, y/x in pixels).
    pub fn grid_from_coords(&self, video_coords: &Tensor) -> Result<Tensor> {
        let base = Tensor::new(
            &[self.base_num_frames, self.base_height, self.base_width],
            video_coords.device(),
        )?;
        video_coords
            .to_dtype(DType::F32)?
            .transpose(1, 2)?
            .broadcast_div(&base.reshape((1, 1, 3))?)
    }

    /// (cos, sin), each `[B, seq, dim]` f32, for normalised coordinates.
    pub fn forward_grid(&self, grid: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, s, _) = grid.dims3()?;
        let freqs = self.freqs();
        let n = freqs.len();
        let freqs = Tensor::from_vec(freqs, n, grid.device())?;
        let ang = ((grid * 2.0)? - 1.0)?
            .unsqueeze(D::Minus1)?
            .broadcast_mul(&freqs)?; // [B, S, 3, n]
        let ang = ang.transpose(2, 3)?.contiguous()?.reshape((b, s, 3 * n))?;
        let twice = |t: Tensor| -> Result<Tensor> {
            t.unsqueeze(D::Minus1)?
                .broadcast_as((b, s, 3 * n, 2))?
                .contiguous()?
                .reshape((b, s, 6 * n))
        };
        let mut cos = twice(ang.cos()?)?;
        let mut sin = twice(ang.sin()?)?;
        let pad = self.dim % 6;
        if pad != 0 {
            cos = Tensor::cat(
                &[Tensor::ones((b, s, pad), DType::F32, grid.device())?, cos],
                D::Minus1,
            )?;
            sin = Tensor::cat(
                &[Tensor::zeros((b, s, pad), DType::F32, grid.device())?, sin],
                D::Minus1,
            )?;
        }
        Ok((cos, sin))
    }

    /// diffusers' `forward`: from the latent grid, or from `video_coords` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        batch: usize,
        num_frames: usize,
        height: usize,
        width: usize,
        rope_interpolation_scale: Option<[f64; 3]>,
        video_coords: Option<&Tensor>,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let grid = match video_coords {
            Some(c) => self.grid_from_coords(c)?,
            None => self.grid(
                batch,
                num_frames,
                height,
                width,
                rope_interpolation_scale,
                device,
            )?,
        };
        self.forward_grid(&grid)
    }
}

/// Rotates (even, odd) channel pairs of `x` `[B, S, C]` by the rotary angles.
fn apply_rotary_emb(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, s, c) = x.dims3()?;
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let pairs = x.reshape((b, s, c / 2, 2))?;
    let re = pairs.narrow(3, 0, 1)?;
    let im = pairs.narrow(3, 1, 1)?;
    let rotated = Tensor::cat(&[im.neg()?, re], 3)?.reshape((b, s, c))?;
    (x.mul(cos)? + rotated.mul(sin)?)?.to_dtype(dtype)
}

/// `LTXAttention` with `LTXVideoAttnProcessor`.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(query_dim: usize, kv_dim: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.inner_dim();
        Ok(Self {
            to_q: linear(query_dim, inner, cfg.attention_bias, vb.pp("to_q"))?,
            to_k: linear(kv_dim, inner, cfg.attention_bias, vb.pp("to_k"))?,
            to_v: linear(kv_dim, inner, cfg.attention_bias, vb.pp("to_v"))?,
            to_out: linear(
                inner,
                query_dim,
                cfg.attention_out_bias,
                vb.pp("to_out").pp("0"),
            )?,
            norm_q: vb.get(inner, "norm_q.weight")?,
            norm_k: vb.get(inner, "norm_k.weight")?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
        })
    }

    /// `x` `[B, S, D]`; `context` `[B, L, kv_dim]` (self-attention when `None`);
    /// `bias` additive `[B, 1, 1, L]`; `rope` (cos, sin) `[B, S, D]`.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        bias: Option<&Tensor>,
        rope: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        const QK_EPS: f64 = 1e-5;
        let context = context.unwrap_or(x);
        if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::BF16) {
            // Fused norm + rotary, and attention over chunks of queries
            // (bounded score buffer; see `kernels`).
            let rope = rope.map(|(c, s)| (c, s));
            let cross = !std::ptr::eq(context, x);
            let p = profile::scope(if cross { "cross.qkv" } else { "self.qkv" });
            let (q, k, v) = (self.to_q.forward(x)?, self.to_k.forward(context)?, self.to_v.forward(context)?);
            drop(p);
            let p = profile::scope(if cross { "cross.norm_rope" } else { "self.norm_rope" });
            let q = kernels::qk_norm_rope(&q, &self.norm_q, QK_EPS, rope)?;
            let k = kernels::qk_norm_rope(&k, &self.norm_k, QK_EPS, rope)?;
            drop(p);
            let bias = match bias {
                Some(b) => {
                    let (bb, _, _, l) = b.dims4()?;
                    Some(b.to_dtype(DType::F32)?.reshape((bb, l))?)
                }
                None => None,
            };
            let p = profile::scope(if cross { "cross.attention" } else { "self.attention" });
            let out = kernels::attention(&q, &k, &v, self.heads, bias.as_ref())?;
            drop(p);
            let _p = profile::scope(if cross { "cross.out" } else { "self.out" });
            return self.to_out.forward(&out);
        }
        let mut q = rms_norm(&self.to_q.forward(x)?, Some(&self.norm_q), QK_EPS)?;
        let mut k = rms_norm(&self.to_k.forward(context)?, Some(&self.norm_k), QK_EPS)?;
        let v = self.to_v.forward(context)?;
        if let Some((cos, sin)) = rope {
            q = apply_rotary_emb(&q, cos, sin)?;
            k = apply_rotary_emb(&k, cos, sin)?;
        }
        let (b, s, _) = q.dims3()?;
        let l = k.dim(1)?;
        let heads = |t: Tensor, n: usize| {
            t.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (heads(q, s)?, heads(k, l)?, heads(v, l)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let kt = k.t()?;
        // Chunks of queries: the [B, H, chunk, L] f32 scores stay within
        // kernels::SCORE_BUDGET floats.
        let chunk = (kernels::SCORE_BUDGET / (b * self.heads * l).max(1)).clamp(1, s.max(1));
        let mut outs = Vec::with_capacity(s.div_ceil(chunk));
        for s0 in (0..s).step_by(chunk) {
            let qc = q.narrow(2, s0, chunk.min(s - s0))?;
            let mut logits = (qc.matmul(&kt)? * scale)?; // [B, H, chunk, L]
            if let Some(bias) = bias {
                logits = logits.broadcast_add(&bias.to_dtype(logits.dtype())?)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?
                .to_dtype(v.dtype())?;
            outs.push(probs.matmul(&v)?);
        }
        let out = Tensor::cat(&outs, 2)?
            .transpose(1, 2)?
            .reshape((b, s, self.heads * self.head_dim))?;
        self.to_out.forward(&out)
    }
}

/// `FeedForward` with `gelu-approximate`: `net.0.proj` -> GELU(tanh) -> `net.2`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj: linear(dim, 4 * dim, true, vb.pp("net.0.proj"))?,
            out: linear(4 * dim, dim, true, vb.pp("net.2"))?,
        })
    }
}

impl FeedForward {
    /// The feed-forward over at most `chunk` rows (of `x`'s flattened
    /// leading dimensions) at a time.
    pub fn forward_rows(&self, chunk: usize, x: &Tensor) -> Result<Tensor> {
        let lead = x.dims()[..x.rank() - 1].to_vec();
        let d = x.dim(D::Minus1)?;
        let m: usize = lead.iter().product();
        let chunk = chunk.max(1);
        let x2 = x.reshape((m, d))?;
        let mut outs = Vec::with_capacity(m.div_ceil(chunk));
        for r0 in (0..m).step_by(chunk) {
            let xc = x2.narrow(0, r0, chunk.min(m - r0))?;
            let p = profile::scope("ff.up_gelu");
            let h = self.proj.forward_act(&xc, Act::GeluTanh)?;
            drop(p);
            let _p = profile::scope("ff.down");
            outs.push(self.out.forward(&h)?);
        }
        let y = if outs.len() == 1 { outs.pop().expect("one chunk") } else { Tensor::cat(&outs, 0)? };
        let mut shape = lead;
        shape.push(y.dim(1)?);
        y.reshape(shape)
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Rows in chunks whose 4x-wide intermediate stays under 24 MiB: below
        // glibc's 32 MiB mmap ceiling, so its buffers are reused rather than
        // page-faulted in on every call (2688 rows: 88 MiB otherwise).
        let d = x.dim(D::Minus1)?;
        if x.device().is_cpu() {
            return self.forward_rows((6 << 20) / (4 * d).max(1), x);
        }
        let p = profile::scope("ff.up_gelu");
        let h = self.proj.forward_act(x, Act::GeluTanh)?;
        drop(p);
        let _p = profile::scope("ff.down");
        self.out.forward(&h)
    }
}

/// `LTXVideoTransformerBlock`.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    norm1: Option<Tensor>,
    attn1: Attention,
    norm2: Option<Tensor>,
    attn2: Attention,
    ff: FeedForward,
    scale_shift_table: Tensor,
    eps: f64,
}

impl TransformerBlock {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.inner_dim();
        let norm = |name: &str| -> Result<Option<Tensor>> {
            if cfg.norm_elementwise_affine {
                Ok(Some(vb.get(d, &format!("{name}.weight"))?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            norm1: norm("norm1")?,
            attn1: Attention::new(d, d, cfg, vb.pp("attn1"))?,
            norm2: norm("norm2")?,
            attn2: Attention::new(d, cfg.cross_attention_dim, cfg, vb.pp("attn2"))?,
            ff: FeedForward::new(d, vb.pp("ff"))?,
            scale_shift_table: vb.get((6, d), "scale_shift_table")?,
            eps: cfg.norm_eps,
        })
    }

    /// `x` `[B, S, D]`, `context` `[B, L, D]`, `temb` the modulation of the
    /// distinct timesteps and each token's row of it, `rope` (cos, sin),
    /// `bias` `[B, 1, 1, L]`.
    pub fn forward(
        &self,
        x: &Tensor,
        context: &Tensor,
        temb: &TokenTemb,
        rope: &(Tensor, Tensor),
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let p = profile::scope("block.ada");
        let d = self.scale_shift_table.dim(1)?;
        let table = self.scale_shift_table.to_dtype(temb.values.dtype())?;
        if x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::BF16)
            && matches!(temb.values.dtype(), DType::F32 | DType::BF16)
            && self.norm1.is_none()
            && self.norm2.is_none()
        {
            // Fused norm/modulation and gated residuals (f32 arithmetic), the
            // modulation computed once per distinct timestep.
            let table = table.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let ada = kernels::ada_modulation(&temb.values, &table)?;
            let rows = &temb.rows[..];
            drop(p);
            let p = profile::scope("block.norm_residual");
            let h = kernels::rms_norm_modulate(x, &ada, rows, 0, 1, self.eps)?;
            drop(p);
            let h = self.attn1.forward(&h, None, None, Some(rope))?;
            let p = profile::scope("block.norm_residual");
            let x = kernels::gated_residual(x, &h, &ada, rows, 2)?;
            drop(p);
            let h = self.attn2.forward(&x, Some(context), bias, None)?;
            let p = profile::scope("block.norm_residual");
            let x = kernels::residual_add(&x, &h)?;
            let h = kernels::rms_norm_modulate(&x, &ada, rows, 3, 4, self.eps)?;
            drop(p);
            let h = self.ff.forward(&h)?;
            let _p = profile::scope("block.norm_residual");
            return kernels::gated_residual(&x, &h, &ada, rows, 5);
        }
        let (b, t) = (temb.batch, temb.per_sample);
        let ada = temb
            .values
            .index_select(&temb.index, 0)?
            .reshape((b, t, 6, d))?
            .broadcast_add(&table.reshape((1, 1, 6, d))?)?;
        drop(p);
        let p = |i: usize| ada.narrow(2, i, 1)?.squeeze(2);
        let (shift_msa, scale_msa, gate_msa) = (p(0)?, p(1)?, p(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (p(3)?, p(4)?, p(5)?);

        let h = modulate(
            &rms_norm(x, self.norm1.as_ref(), self.eps)?,
            &shift_msa,
            &scale_msa,
        )?;
        let h = self.attn1.forward(&h, None, None, Some(rope))?;
        let x = (x + h.broadcast_mul(&gate_msa)?)?;
        let h = self.attn2.forward(&x, Some(context), bias, None)?;
        let x = (x + h)?;
        let h = modulate(
            &rms_norm(&x, self.norm2.as_ref(), self.eps)?,
            &shift_mlp,
            &scale_mlp,
        )?;
        let h = self.ff.forward(&h)?;
        x + h.broadcast_mul(&gate_mlp)?
    }
}

/// The timestep modulation of a forward pass: `time_embed` is run once per
/// distinct timestep (per-token timesteps take a handful of values: the
/// noise level and the conditioning strengths), not once per token.
#[derive(Debug, Clone)]
pub struct TokenTemb {
    /// `[U, 6D]`: `time_embed`'s output for the `U` distinct timesteps.
    pub values: Tensor,
    /// `[B * T]` (u32): the row of `values` of every timestep passed.
    pub index: Tensor,
    /// `B * S`: the row of `values` of every token.
    pub rows: Vec<u32>,
    pub batch: usize,
    /// T: 1 (one timestep per sample) or S (one per token).
    pub per_sample: usize,
}

/// The distinct values of the timesteps `t` `[N]` (as f32, first-seen order)
/// and the index of each element's value.
fn distinct_timesteps(t: &Tensor) -> Result<(Tensor, Vec<u32>)> {
    let vals = t.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut uniq: Vec<f32> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let index = vals
        .iter()
        .map(|&v| {
            *seen.entry(v.to_bits()).or_insert_with(|| {
                uniq.push(v);
                uniq.len() as u32 - 1
            })
        })
        .collect();
    let n = uniq.len();
    Ok((Tensor::from_vec(uniq, n, t.device())?, index))
}

/// `AdaLayerNormSingle` (PixArt-alpha), without the additional conditions.
#[derive(Debug, Clone)]
pub struct AdaLayerNormSingle {
    linear_1: Linear,
    linear_2: Linear,
    linear: Linear,
}

impl AdaLayerNormSingle {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let e = vb.pp("emb").pp("timestep_embedder");
        Ok(Self {
            linear_1: linear(TIME_PROJ_DIM, dim, true, e.pp("linear_1"))?,
            linear_2: linear(dim, dim, true, e.pp("linear_2"))?,
            linear: linear(dim, 6 * dim, true, vb.pp("linear"))?,
        })
    }

    /// Sinusoidal embedding `[N, 256]` (cos then sin) of timesteps `[N]`, in f32
    /// (`get_timestep_embedding` with `flip_sin_to_cos`, shift 0).
    pub fn time_proj(t: &Tensor) -> Result<Tensor> {
        let half = TIME_PROJ_DIM / 2;
        let k = -(10000f64.ln() as f32);
        let freqs: Vec<f32> = (0..half)
            .map(|i| ((k * i as f32 / half as f32) as f64).exp() as f32)
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
        let arg = t
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .broadcast_mul(&freqs)?;
        Tensor::cat(&[arg.cos()?, arg.sin()?], 1)
    }

    /// Returns (`temb` `[N, 6D]`, `embedded_timestep` `[N, D]`) for timesteps `[N]`.
    pub fn forward(&self, t: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let proj = Self::time_proj(t)?.to_dtype(dtype)?;
        let emb = self
            .linear_2
            .forward(&self.linear_1.forward(&proj)?.silu()?)?;
        Ok((self.linear.forward(&emb.silu()?)?, emb))
    }
}

/// `PixArtAlphaTextProjection` (GELU tanh).
#[derive(Debug, Clone)]
pub struct CaptionProjection {
    linear_1: Linear,
    linear_2: Linear,
}

impl CaptionProjection {
    pub fn new(in_features: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_features, hidden, true, vb.pp("linear_1"))?,
            linear_2: linear(hidden, hidden, true, vb.pp("linear_2"))?,
        })
    }
}

impl Module for CaptionProjection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&self.linear_1.forward_act(x, Act::GeluTanh)?)
    }
}

/// `LTXVideoTransformer3DModel`.
#[derive(Debug, Clone)]
pub struct LtxVideoTransformer3DModel {
    proj_in: Linear,
    scale_shift_table: Tensor,
    time_embed: AdaLayerNormSingle,
    caption_projection: CaptionProjection,
    rope: RotaryPosEmbed,
    transformer_blocks: Vec<TransformerBlock>,
    proj_out: Linear,
    dtype: DType,
    config: Config,
}

impl LtxVideoTransformer3DModel {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        // Reused freed buffers instead of fresh zeroed pages per op.
        crate::runtime::tune_allocator();
        let d = cfg.inner_dim();
        let transformer_blocks = (0..cfg.num_layers)
            .map(|i| TransformerBlock::new(cfg, vb.pp("transformer_blocks").pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            proj_in: linear(cfg.in_channels, d, true, vb.pp("proj_in"))?,
            scale_shift_table: vb.get((2, d), "scale_shift_table")?,
            time_embed: AdaLayerNormSingle::new(d, vb.pp("time_embed"))?,
            caption_projection: CaptionProjection::new(
                cfg.caption_channels,
                d,
                vb.pp("caption_projection"),
            )?,
            rope: RotaryPosEmbed::new(cfg),
            transformer_blocks,
            proj_out: linear(d, cfg.out_channels(), true, vb.pp("proj_out"))?,
            dtype: vb.dtype(),
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn rope(&self) -> &RotaryPosEmbed {
        &self.rope
    }

    /// diffusers' `forward`, returning the velocity `[B, seq, out_channels]`.
    ///
    /// * `hidden_states` `[B, seq, in_channels]`: patchified latent tokens.
    /// * `encoder_hidden_states` `[B, L, caption_channels]`: T5 embeddings.
    /// * `timestep` `[B]` (one per sample) or `[B, T]` (T = 1 or seq: per token).
    /// * `encoder_attention_mask` `[B, L]`: 1 for tokens, 0 for padding.
    /// * `num_frames`, `height`, `width`: the latent grid (patches), used when
    ///   `video_coords` is `None`, scaled by `rope_interpolation_scale`
    ///   (`(8 / frame_rate, 32, 32)` for LTX-Video's VAE; `None`: unscaled).
    /// * `video_coords` `[B, 3, seq]`: explicit (seconds, pixels, pixels) coordinates.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        encoder_hidden_states: &Tensor,
        timestep: &Tensor,
        encoder_attention_mask: Option<&Tensor>,
        num_frames: usize,
        height: usize,
        width: usize,
        rope_interpolation_scale: Option<[f64; 3]>,
        video_coords: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, seq, _) = hidden_states.dims3()?;
        if video_coords.is_none() && num_frames * height * width != seq {
            bail!("LTX transformer: {seq} tokens but a {num_frames}x{height}x{width} latent grid")
        }
        let device = hidden_states.device();
        let pre = profile::scope("model.pre");
        let (cos, sin) = self.rope.forward(
            b,
            num_frames,
            height,
            width,
            rope_interpolation_scale,
            video_coords,
            device,
        )?;
        let rope = (cos, sin);

        let bias = match encoder_attention_mask {
            Some(m) => {
                let l = m.dim(1)?;
                let bias = ((1.0 - m.to_dtype(DType::F32)?)? * -10000.0)?;
                Some(bias.reshape((b, 1, 1, l))?.to_dtype(self.dtype)?)
            }
            None => None,
        };

        let x = self.proj_in.forward(&hidden_states.to_dtype(self.dtype)?)?;
        let t = timestep.flatten_all()?;
        let n = t.dim(0)?;
        if n % b != 0 || (n / b != 1 && n / b != seq) {
            bail!("LTX transformer: {n} timesteps for a batch of {b} x {seq} tokens")
        }
        let per_sample = n / b;
        let (uniq, index) = distinct_timesteps(&t)?;
        let (temb_u, embedded_u) = self.time_embed.forward(&uniq, self.dtype)?;
        let rows: Vec<u32> = (0..b * seq)
            .map(|r| index[(r / seq) * per_sample + if per_sample == 1 { 0 } else { r % seq }])
            .collect();
        let index = Tensor::from_vec(index, n, device)?;
        let embedded = embedded_u.index_select(&index, 0)?.reshape((b, per_sample, ()))?;
        let temb = TokenTemb { values: temb_u, index, rows, batch: b, per_sample };

        let context = self
            .caption_projection
            .forward(&encoder_hidden_states.to_dtype(self.dtype)?)?;

        drop(pre);
        let mut x = x;
        for block in &self.transformer_blocks {
            x = block.forward(&x, &context, &temb, &rope, bias.as_ref())?;
        }

        let _post = profile::scope("model.post");
        let d = self.scale_shift_table.dim(1)?;
        let ss = self
            .scale_shift_table
            .to_dtype(self.dtype)?
            .reshape((1, 1, 2, d))?
            .broadcast_add(&embedded.unsqueeze(2)?)?;
        let shift = ss.narrow(2, 0, 1)?.squeeze(2)?;
        let scale = ss.narrow(2, 1, 1)?.squeeze(2)?;
        let x = modulate(&layer_norm(&x, 1e-6)?, &shift, &scale)?;
        self.proj_out.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn tiny(affine: bool) -> Config {
        Config {
            in_channels: 8,
            out_channels: Some(8),
            num_attention_heads: 2,
            attention_head_dim: 8,
            cross_attention_dim: 16,
            num_layers: 2,
            caption_channels: 12,
            norm_elementwise_affine: affine,
            ..Config::default()
        }
    }

    fn model(cfg: &Config) -> LtxVideoTransformer3DModel {
        let dev = Device::Cpu;
        let ts: HashMap<String, Tensor> = tensor_shapes(cfg)
            .into_iter()
            .map(|(name, shape)| {
                let t = if name.ends_with("norm1.weight") || name.ends_with("norm2.weight") {
                    Tensor::ones(shape, DType::F32, &dev).unwrap()
                } else {
                    // Seeded by name: both configs get the same shared tensors.
                    let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
                    let n: usize = shape.iter().product();
                    let v: Vec<f32> = (0..n)
                        .map(|k| (((seed.wrapping_add(k as u64).wrapping_mul(2654435761) >> 7) % 2001) as f32 / 1000.0 - 1.0) * 0.3)
                        .collect();
                    Tensor::from_vec(v, shape, &dev).unwrap()
                };
                (name, t)
            })
            .collect();
        LtxVideoTransformer3DModel::new(cfg, VarBuilder::from_tensors(ts, DType::F32, &dev)).unwrap()
    }

    /// Per-token timesteps with a few distinct values: the fused CPU path
    /// (modulation once per distinct timestep, rows indexed per token) equals
    /// the plain candle path (affine norms of ones take it), and one
    /// timestep per sample equals the same timestep repeated per token.
    #[test]
    fn distinct_timesteps_match_per_token_modulation() {
        let dev = Device::Cpu;
        let (fused, plain) = (model(&tiny(false)), model(&tiny(true)));
        let (b, f, h, w) = (2usize, 2usize, 2usize, 3usize);
        let s = f * h * w;
        let x = Tensor::randn(0f32, 1.0, (b, s, 8), &dev).unwrap();
        let ctx = Tensor::randn(0f32, 1.0, (b, 5, 12), &dev).unwrap();
        let mask = Tensor::from_vec(vec![1f32, 1., 1., 0., 0., 1., 1., 1., 1., 0.], (b, 5), &dev).unwrap();
        let per_token: Vec<f32> = (0..b * s).map(|r| [0.0, 700.0, 700.0, 31.5][r % 4]).collect();
        let t = Tensor::from_vec(per_token, (b, s), &dev).unwrap();
        let run = |m: &LtxVideoTransformer3DModel, t: &Tensor| {
            m.forward(&x, &ctx, t, Some(&mask), f, h, w, Some([0.32, 32.0, 32.0]), None).unwrap()
        };
        let diff = |a: &Tensor, b: &Tensor| a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let (a, p) = (run(&fused, &t), run(&plain, &t));
        assert!(diff(&a, &p) < 1e-4, "fused vs plain: {}", diff(&a, &p));
        let one = Tensor::from_vec(vec![700f32, 31.5], b, &dev).unwrap();
        let rep = one.reshape((b, 1)).unwrap().repeat((1, s)).unwrap();
        assert_eq!(diff(&run(&fused, &one), &run(&fused, &rep)), 0.0);
        // Timesteps that are neither one per sample nor one per token.
        let bad = Tensor::zeros((b, 3), DType::F32, &dev).unwrap();
        assert!(fused.forward(&x, &ctx, &bad, Some(&mask), f, h, w, None, None).is_err());
    }
}
