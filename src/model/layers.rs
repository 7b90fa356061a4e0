//! Building blocks of the transformer, written so that every operation has a
//! backward pass when training (candle's fused layer-norm and softmax kernels
//! have none; they are used only for inference).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Whether a forward pass must be differentiable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fused kernels, attention computed in bounded chunks of windows.
    Inference,
    /// Only differentiable operations.
    Train,
}

/// Linear layer over the last dimension of a tensor of any rank.
pub(crate) fn linear(x: &Tensor, l: &Linear) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = *dims.last().expect("rank >= 1");
    let rows = x.elem_count() / last.max(1);
    let y = l.forward(&x.reshape((rows, last))?)?;
    let mut out = dims;
    *out.last_mut().unwrap() = y.dim(1)?;
    y.reshape(out)
}

/// Layer norm without affine parameters (the affine part comes from the
/// timestep modulation, as in DiT).
pub(crate) struct Norm {
    ones: Tensor,
    zeros: Tensor,
    eps: f64,
}

impl Norm {
    pub fn new(dim: usize, dev: &candle_core::Device) -> Result<Self> {
        Ok(Self {
            ones: Tensor::ones(dim, candle_core::DType::F32, dev)?,
            zeros: Tensor::zeros(dim, candle_core::DType::F32, dev)?,
            eps: 1e-6,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Inference => candle_nn::ops::layer_norm(&x.contiguous()?, &self.ones, &self.zeros, self.eps as f32),
            Mode::Train => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                xc.broadcast_div(&(var + self.eps)?.sqrt()?)
            }
        }
    }
}

pub(crate) fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::softmax_last_dim(x),
        Mode::Train => candle_nn::ops::softmax(x, D::Minus1),
    }
}

/// `x * (1 + scale) + shift`, with per-frame scale and shift broadcast over tokens.
pub(crate) fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// Rotary embedding in the "rotate half" layout: dimension i and i + hd/2 are
/// rotated by angle i. `cos`/`sin` broadcast against `x` (last dim hd/2).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

/// Geometry of the spacetime windows of one forward pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    /// Window size in tokens along y and x.
    pub wy: usize,
    pub wx: usize,
    /// Cyclic shift applied before partitioning (shifted blocks).
    pub sy: usize,
    pub sx: usize,
}

impl Windows {
    /// `[B, T, Hg, Wg, C]` -> `[B * nY * nX, T * wy * wx, C]`.
    pub fn partition(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        if self.sy > 0 {
            x = x.roll(-(self.sy as i32), 2)?;
        }
        if self.sx > 0 {
            x = x.roll(-(self.sx as i32), 3)?;
        }
        let (b, t, hg, wg, c) = x.dims5()?;
        let (ny, nx) = (hg / self.wy, wg / self.wx);
        x.reshape(&[b, t, ny, self.wy, nx, self.wx, c][..])?
            .permute([0, 2, 4, 1, 3, 5, 6])?
            .reshape((b * ny * nx, t * self.wy * self.wx, c))
    }

    /// Inverse of [`Windows::partition`].
    pub fn merge(&self, x: &Tensor, b: usize, t: usize, hg: usize, wg: usize) -> Result<Tensor> {
        let c = x.dim(D::Minus1)?;
        let (ny, nx) = (hg / self.wy, wg / self.wx);
        let mut x = x
            .reshape(&[b, ny, nx, t, self.wy, self.wx, c][..])?
            .permute([0, 3, 1, 4, 2, 5, 6])?
            .reshape((b, t, hg, wg, c))?;
        if self.sx > 0 {
            x = x.roll(self.sx as i32, 3)?;
        }
        if self.sy > 0 {
            x = x.roll(self.sy as i32, 2)?;
        }
        Ok(x)
    }
}

/// Multi-head self-attention inside each spacetime window, with 3-D RoPE.
pub(crate) struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl WindowAttention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: candle_nn::linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: candle_nn::linear(dim, dim, vb.pp("proj"))?,
            heads,
        })
    }

    /// `x`: `[Nw, L, C]` windows of tokens; `cos`/`sin`: `[Nw, L, hd/2]`.
    /// With `context` (keys and values of the known frames' tokens of the same
    /// windows, `[Nw, H, Lk, hd]`), the queries attend to the context and to
    /// `x`; without, to `x` alone. Returns the output and this call's own
    /// (rotated) keys and values, which the known-frame pass hands to the
    /// pass over the frames being generated.
    /// Windows are processed in chunks so that the attention scores never
    /// exceed `max_scores` floats at once.
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        context: Option<&(Tensor, Tensor)>,
        mode: Mode,
        max_scores: usize,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (nw, l, c) = x.dims3()?;
        let hd = c / self.heads;
        let qkv = linear(x, &self.qkv)?
            .reshape((nw, l, 3, self.heads, hd))?
            .permute([2, 0, 3, 1, 4])?
            .contiguous()?;
        let (cos, sin) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
        let q = rope(&qkv.get(0)?, &cos, &sin)?;
        let k = rope(&qkv.get(1)?, &cos, &sin)?;
        let v = qkv.get(2)?.contiguous()?;
        let (keys, values) = match context {
            Some((ck, cv)) => (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?),
            None => (k.clone(), v.clone()),
        };
        let lk = keys.dim(2)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let per_window = self.heads * l * lk;
        let chunk = (max_scores / per_window.max(1)).clamp(1, nw);
        let mut outs = Vec::with_capacity(nw.div_ceil(chunk));
        let mut start = 0;
        while start < nw {
            let n = chunk.min(nw - start);
            let att = (q.narrow(0, start, n)?.matmul(&keys.narrow(0, start, n)?.t()?)? * scale)?;
            let att = softmax(&att, mode)?;
            outs.push(att.matmul(&values.narrow(0, start, n)?)?);
            start += n;
        }
        let o = if outs.len() == 1 { outs.pop().unwrap() } else { Tensor::cat(&outs, 0)? };
        let o = o.transpose(1, 2)?.reshape((nw, l, c))?;
        Ok((linear(&o, &self.proj)?, (k, v)))
    }
}

/// One transformer block: spacetime window attention + MLP (SiLU: one exp per
/// element where tanh-GELU costs a tanh), both modulated
/// per frame by the conditioning vector (known flag + timestep).
pub(crate) struct Block {
    ada: Linear,
    attn: WindowAttention,
    fc1: Linear,
    fc2: Linear,
    norm: Norm,
    pub shifted: bool,
}

impl Block {
    pub fn new(dim: usize, heads: usize, mlp_ratio: usize, shifted: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ada: candle_nn::linear(dim, 6 * dim, vb.pp("ada"))?,
            attn: WindowAttention::new(dim, heads, vb.pp("attn"))?,
            fc1: candle_nn::linear(dim, mlp_ratio * dim, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(mlp_ratio * dim, dim, vb.pp("mlp.fc2"))?,
            norm: Norm::new(dim, vb.device())?,
            shifted,
        })
    }

    /// `x`: `[B, T, Hg, Wg, C]`; `cond`: `[B, T, C]` (already through SiLU);
    /// `cos`/`sin`: window-partitioned rotary tables for this block's shift;
    /// `context`: keys/values of the known frames (see [`WindowAttention`]).
    /// Returns the block output and its attention keys/values.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        cond: &Tensor,
        win: &Windows,
        cos: &Tensor,
        sin: &Tensor,
        context: Option<&(Tensor, Tensor)>,
        mode: Mode,
        max_scores: usize,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, hg, wg, c) = x.dims5()?;
        let m = linear(cond, &self.ada)?.reshape((b, t, 1, 1, 6 * c))?;
        let part = |i: usize| m.narrow(D::Minus1, i * c, c);
        let (sh1, sc1, g1, sh2, sc2, g2) = (part(0)?, part(1)?, part(2)?, part(3)?, part(4)?, part(5)?);

        let h = modulate(&self.norm.forward(x, mode)?, &sh1, &sc1)?;
        let h = win.partition(&h)?;
        let (h, kv) = self.attn.forward(&h, cos, sin, context, mode, max_scores)?;
        let h = win.merge(&h, b, t, hg, wg)?;
        let x = (x + h.broadcast_mul(&g1)?)?;

        let h = modulate(&self.norm.forward(&x, mode)?, &sh2, &sc2)?;
        let h = self.mlp(&h, mode)?;
        Ok(((x + h.broadcast_mul(&g2)?)?, kv))
    }

    /// The MLP; in inference over bounded groups of tokens, so the hidden
    /// activations (`mlp_ratio` times wider) never exist for a whole window.
    fn mlp(&self, h: &Tensor, mode: Mode) -> Result<Tensor> {
        const ROWS: usize = 8192;
        let dims = h.dims().to_vec();
        let c = *dims.last().expect("rank 5");
        let rows = h.elem_count() / c;
        if mode == Mode::Train || rows <= ROWS {
            return linear(&linear(h, &self.fc1)?.silu()?, &self.fc2);
        }
        let flat = h.reshape((rows, c))?;
        let mut parts = Vec::with_capacity(rows.div_ceil(ROWS));
        let mut start = 0;
        while start < rows {
            let n = ROWS.min(rows - start);
            let part = flat.narrow(0, start, n)?;
            parts.push(linear(&linear(&part, &self.fc1)?.silu()?, &self.fc2)?);
            start += n;
        }
        Tensor::cat(&parts, 0)?.reshape(dims)
    }
}
