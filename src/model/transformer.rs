//! weft's own model: a diffusion transformer over spacetime patches that
//! refines an estimate of the frames to generate (runs only for trained
//! weights, see [`Config::trained`]).
//!
//! # Architecture
//! * A window of `T` frames `[B, T, 3, H, W]` (pixels in [-1, 1]) is padded
//!   (edge replication) to a multiple of `patch_size * window`, cut into
//!   `patch_size`² patches and embedded to `hidden_size` tokens, giving a
//!   token grid `[B, T, Hg, Wg, C]`. Padding is cropped off the output, so the
//!   caller never sees a size rule.
//! * Every frame slot carries a conditioning vector: an embedding of its flow
//!   timestep (0 for known, clean frames) plus a learned "known / generate"
//!   embedding — the per-frame timestep of Open-Sora. It modulates every block
//!   (adaLN: shift, scale and gate per frame), so known frames enter as clean
//!   tokens and are recognised as such.
//! * Positions are encoded with 3-D rotary embeddings: each head is split into a
//!   time part (a quarter) and y / x parts. Time positions are real numbers
//!   (frame offsets, possibly far apart or negative), y / x are patch indices.
//!   No learned table fixes the number of frames or the resolution.
//! * Attention: **spacetime window attention** (Video-Swin style). Each block
//!   attends within windows of `T x window x window` tokens: all frames of the
//!   model window, a local spatial neighbourhood. Every other block shifts the
//!   windows cyclically by half a window so information flows across window
//!   borders. Chosen over full attention because the cost is linear in H x W
//!   (a 720p frame is 14 400 tokens at patch 8: full attention over 5 such
//!   frames would need 5e9 scores per head), and over factorised spatial +
//!   temporal attention because one joint window sees motion of up to a few
//!   patches directly, which per-location temporal attention cannot. In
//!   inference the windows are processed in chunks so that attention scores
//!   stay under a fixed budget whatever the frame size.
//! * Known frames are a pass of their own: their tokens attend only to known
//!   tokens, so they never depend on the noisy frames, and the frames being
//!   generated attend to the known tokens' keys and values plus their own.
//!   The known pass is the same at every sampling step, so the sampler runs it
//!   once per window ([`Transformer::encode_known`]) and each step costs only the
//!   frames being generated ([`Transformer::forward_generating`]): for a one-frame
//!   gap with four context frames, a fifth of a whole-window pass.
//! * A final modulated layer maps tokens back to patch pixels: the predicted
//!   flow velocity `v = x_1 - clean`, where `x_1`, the start of the flow, is
//!   set by the config's [`Prior`]: pure noise (rectified flow), or a
//!   classical estimate of the frame plus a little noise (a flow bridge; the
//!   default model starts from a motion-compensated interpolation of its
//!   neighbours, `tasks::motion`, and learns the path from there to the
//!   truth).

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::Distribution;

use super::{Config, Prior, weights};
use super::layers::Mode;

use crate::error::{Result, WeftError};
use super::device_name;
use super::layers::{Block, Norm, Windows, linear, modulate};

/// Upper bound on attention-score floats held at once in inference (32 MiB).
const MAX_SCORES: usize = 8 << 20;

/// The network itself (weights live in the owning [`Transformer`]'s var map).
struct Net {
    patch_embed: Linear,
    t_fc1: Linear,
    t_fc2: Linear,
    known_embed: Tensor,
    blocks: Vec<Block>,
    final_ada: Linear,
    final_linear: Linear,
    norm: Norm,
}

impl Net {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = cfg.hidden_size;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(c, cfg.num_heads, cfg.mlp_ratio, i % 2 == 1, vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            patch_embed: candle_nn::linear(cfg.patch_dim(), c, vb.pp("patch_embed"))?,
            t_fc1: candle_nn::linear(cfg.time_freq_dim, c, vb.pp("t_embed.fc1"))?,
            t_fc2: candle_nn::linear(c, c, vb.pp("t_embed.fc2"))?,
            known_embed: vb.get_with_hints((2, c), "known_embed", candle_nn::Init::Const(0.0))?,
            blocks,
            final_ada: candle_nn::linear(c, 2 * c, vb.pp("final.ada"))?,
            final_linear: candle_nn::linear(c, cfg.patch_dim(), vb.pp("final.linear"))?,
            norm: Norm::new(c, vb.device())?,
        })
    }
}

/// The inputs of one forward pass over a window of frame slots.
pub struct WindowBatch<'a> {
    /// `[B, T, 3, H, W]` f32 in [-1, 1]: clean pixels for known slots, the
    /// current noisy state for slots being generated.
    pub x: &'a Tensor,
    /// `[B, T]` f32 flow time of each slot: 0 = clean, 1 = the flow's start
    /// (known slots are taken as 0).
    pub t: &'a Tensor,
    /// `[B, T]` u32: 1 for a known slot, 0 for a slot being generated.
    pub known: &'a Tensor,
    /// `[B, T]` f32 time position of each slot, in frames.
    pub tpos: &'a Tensor,
}

/// A loaded (or freshly initialised) weft transformer.
pub struct Transformer {
    cfg: Config,
    varmap: VarMap,
    device: Device,
    /// Built on the trainable variables: every op is recorded for backprop.
    net: Net,
    /// The same weights (shared storage, so loads and optimiser steps show
    /// through) as plain tensors: no graph is kept alive, so inference memory
    /// is that of one block's activations, not of the whole pass.
    infer: Net,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("config", &self.cfg)
            .field("parameters", &self.num_parameters())
            .field("device", &device_name(&self.device))
            .finish()
    }
}

impl Transformer {
    /// Builds the network with all weights zero (to be filled by a loader or an initialiser).
    pub(crate) fn build(cfg: &Config, device: &Device) -> Result<Self> {
        cfg.validate()?;
        crate::runtime::tune_allocator();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = Net::new(cfg, vb)?;
        let detached: std::collections::HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .expect("var map lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let infer = Net::new(cfg, VarBuilder::from_tensors(detached, DType::F32, device))?;
        Ok(Self { cfg: cfg.clone(), varmap, device: device.clone(), net, infer })
    }

    /// Every variable of the network `cfg` describes, with its shape, sorted
    /// by name, without allocating the weights: loaders check a file against
    /// it before building (a damaged config asks for no memory).
    pub(crate) fn tensor_shapes(cfg: &Config) -> Result<Vec<(String, Vec<usize>)>> {
        type Shapes = Vec<(String, Vec<usize>)>;
        struct Recorder(std::sync::Arc<std::sync::Mutex<Shapes>>);
        impl candle_nn::var_builder::SimpleBackend for Recorder {
            fn get(
                &self,
                s: candle_core::Shape,
                name: &str,
                _: candle_nn::Init,
                dtype: DType,
                dev: &Device,
            ) -> candle_core::Result<Tensor> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), s.dims().to_vec()));
                Tensor::zeros((), dtype, dev)?.broadcast_as(s)
            }
            fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
                candle_core::bail!("unchecked read of {name}")
            }
            fn contains_tensor(&self, _: &str) -> bool {
                false
            }
        }
        cfg.validate()?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let vb = VarBuilder::from_backend(Box::new(Recorder(seen.clone())), DType::F32, Device::Cpu);
        Net::new(cfg, vb)?;
        let mut v = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// A randomly initialised (untrained) model, identical for the same `seed`.
    /// Weights are drawn with a scaled normal (std = gain / sqrt(fan_in)),
    /// biases start at zero.
    pub fn untrained(cfg: &Config, seed: u64, device: &Device) -> Result<Self> {
        let model = Self::build(cfg, device)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for (name, var) in model.named_vars() {
            let dims = var.dims().to_vec();
            let n: usize = dims.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                let fan_in = if dims.len() == 2 { dims[1] } else { 1 };
                // A bridge model starts at its prior: a near-zero output layer
                // (not exactly zero, so that every tensor gets a gradient from
                // the first step).
                let gain = if name.starts_with("final.linear") && cfg.prior != Prior::Noise {
                    1e-3
                } else if name.contains("ada") || name.starts_with("final.linear") {
                    0.5
                } else {
                    1.0
                };
                let std = gain / (fan_in as f32).sqrt();
                let normal = rand_distr::Normal::new(0.0f32, std).expect("finite std");
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            var.set(&Tensor::from_vec(values, dims, device)?)?;
        }
        Ok(model)
    }

    /// Loads `config.json` and `model.safetensors` from `dir` onto the CPU,
    /// validating every tensor against the config.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Like [`Transformer::load`], onto `device`. Fails when the directory
    /// holds another kind of model.
    pub fn load_on(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        match weights::load_dir(dir, device)?.into_transformer() {
            Some(t) => Ok(t),
            None => Err(WeftError::ModelDir {
                path: dir.to_path_buf(),
                reason: "holds another kind of model, not a weft transformer".into(),
            }),
        }
    }

    /// Builds a model from a config and the bytes of a safetensors file.
    pub fn from_bytes(cfg: &Config, safetensors: &[u8], device: &Device) -> Result<Self> {
        weights::load_bytes(cfg, safetensors, Path::new("<memory>"), device)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if
    /// needed; files are written under temporary names and renamed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        weights::save_dir(self, dir.as_ref())
    }

    /// A copy of this model on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let model = Self::build(&self.cfg, device)?;
        let src = self.named_vars();
        for ((_, dst), (_, s)) in model.named_vars().into_iter().zip(src) {
            dst.set(&s.as_tensor().to_device(device)?)?;
        }
        Ok(model)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The trainable variables (for an optimiser).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// All variables sorted by name.
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        let data = self.varmap.data().lock().expect("var map lock");
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Predicts the flow velocity for every slot of a window: `[B, T, 3, H, W]`.
    ///
    /// Known slots are run as their own pass (their tokens attend only to
    /// known tokens, so they never depend on the noisy frames); the slots
    /// being generated attend to the known tokens' keys/values and to each
    /// other. Every sample of a batch must have the same number of known slots.
    pub fn forward(&self, batch: &WindowBatch<'_>, mode: Mode) -> Result<Tensor> {
        let (b, t, _, _, _) = batch.x.dims5()?;
        let flags: Vec<Vec<u32>> = batch.known.to_dtype(DType::U32)?.to_vec2()?;
        let known_idx: Vec<Vec<u32>> =
            flags.iter().map(|f| (0..t as u32).filter(|&i| f[i as usize] != 0).collect()).collect();
        let unknown_idx: Vec<Vec<u32>> =
            flags.iter().map(|f| (0..t as u32).filter(|&i| f[i as usize] == 0).collect()).collect();
        let tk = known_idx[0].len();
        if known_idx.iter().any(|k| k.len() != tk) {
            return Err(WeftError::BadPlan("every sample of a batch needs the same number of known slots".into()));
        }
        let pick = |src: &Tensor, idx: &[Vec<u32>]| -> candle_core::Result<Tensor> {
            let parts = idx
                .iter()
                .enumerate()
                .map(|(i, ix)| {
                    let ix = Tensor::from_vec(ix.clone(), ix.len(), src.device())?;
                    src.get(i)?.index_select(&ix, 0)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&parts, 0)
        };
        let mut outputs = Vec::new();
        let mut order: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut context = None;
        for (idx, is_known) in [(&known_idx, true), (&unknown_idx, false)] {
            if idx[0].is_empty() {
                continue;
            }
            let x = pick(batch.x, idx)?;
            // Known slots are clean: their flow time is 0 whatever `t` says.
            let tt = if is_known { pick(batch.t, idx)?.zeros_like()? } else { pick(batch.t, idx)? };
            let kk = pick(batch.known, idx)?;
            let tp = pick(batch.tpos, idx)?;
            let ctx = if is_known { None } else { context.as_deref() };
            let (v, kvs) = self.pass_impl(&x, &tt, &kk, &tp, ctx, mode, true, is_known)?;
            if is_known {
                context = Some(kvs);
            }
            outputs.push(v);
            for (o, ix) in order.iter_mut().zip(idx.iter()) {
                o.extend_from_slice(ix);
            }
        }
        let all = if outputs.len() == 1 { outputs.pop().unwrap() } else { Tensor::cat(&outputs, 1)? };
        // Back to slot order: position i of the output holds slot order[i].
        let inverse: Vec<Vec<u32>> = order
            .iter()
            .map(|o| {
                let mut inv = vec![0u32; t];
                for (i, &slot) in o.iter().enumerate() {
                    inv[slot as usize] = i as u32;
                }
                inv
            })
            .collect();
        Ok(pick(&all, &inverse)?)
    }

    /// Runs the known frames of a window once (inference): their keys and
    /// values in every block, for [`Transformer::forward_generating`]. `x`:
    /// `[B, Tk, 3, H, W]` clean frames, `tpos`: `[B, Tk]`.
    pub fn encode_known(&self, x: &Tensor, tpos: &Tensor) -> Result<KnownContext> {
        let (b, tk, _, h, w) = x.dims5()?;
        let t = Tensor::zeros((b, tk), DType::F32, &self.device)?;
        let known = Tensor::ones((b, tk), DType::U32, &self.device)?;
        let (_, kvs) = self.pass_impl(x, &t, &known, tpos, None, Mode::Inference, false, true)?;
        Ok(KnownContext { kvs, size: (b, h, w) })
    }

    /// Velocity of the frames being generated, `[B, Tu, 3, H, W]`, given the
    /// known frames' context (inference). Equal to the matching slots of
    /// [`Transformer::forward`] on the whole window, at a cost that depends only on
    /// the frames being generated.
    pub fn forward_generating(&self, context: &KnownContext, x: &Tensor, t: &Tensor, tpos: &Tensor) -> Result<Tensor> {
        let (b, tu, _, h, w) = x.dims5()?;
        if (b, h, w) != context.size {
            return Err(WeftError::BadPlan(format!(
                "context was encoded for {:?} (batch, height, width), frames are {:?}",
                context.size,
                (b, h, w)
            )));
        }
        let known = Tensor::zeros((b, tu), DType::U32, &self.device)?;
        Ok(self.pass_impl(x, t, &known, tpos, Some(&context.kvs), Mode::Inference, true, false)?.0)
    }

    /// One pass over a group of frames (all known, or all being generated
    /// with `context`). Returns the velocity (when `head`) and, when
    /// `keep_kv`, every block's keys/values (else they are dropped at once).
    #[allow(clippy::too_many_arguments)]
    fn pass_impl(
        &self,
        x: &Tensor,
        t_flow: &Tensor,
        known: &Tensor,
        tpos: &Tensor,
        context: Option<&[(Tensor, Tensor)]>,
        mode: Mode,
        head: bool,
        keep_kv: bool,
    ) -> candle_core::Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let cfg = &self.cfg;
        let net = match mode {
            Mode::Train => &self.net,
            Mode::Inference => &self.infer,
        };
        let dev = &self.device;
        let (b, t, ch, h, w) = x.dims5()?;
        if ch != 3 {
            candle_core::bail!("expected 3 colour channels, got {ch}");
        }
        let p = cfg.patch_size;
        let c = cfg.hidden_size;

        // Token grid and window geometry; pad pixels so both divide.
        let (gh, gw) = (h.div_ceil(p), w.div_ceil(p));
        let (wy, wx) = (cfg.window.min(gh), cfg.window.min(gw));
        let (hg, wg) = (gh.div_ceil(wy) * wy, gw.div_ceil(wx) * wx);
        let (hp, wp) = (hg * p, wg * p);
        let mut x = x.clone();
        if hp > h {
            x = x.pad_with_same(3, 0, hp - h)?;
        }
        if wp > w {
            x = x.pad_with_same(4, 0, wp - w)?;
        }

        // Patchify: [B,T,3,Hg,p,Wg,p] -> [B,T,Hg,Wg,3*p*p] -> tokens.
        let x = x
            .reshape(&[b, t, 3, hg, p, wg, p][..])?
            .permute([0, 1, 3, 5, 2, 4, 6])?
            .reshape((b, t, hg, wg, 3 * p * p))?;
        let mut x = linear(&x, &net.patch_embed)?;

        // Per-frame conditioning.
        let temb = timestep_features(t_flow, cfg.time_freq_dim)?;
        let temb = linear(&linear(&temb, &net.t_fc1)?.silu()?, &net.t_fc2)?;
        let kemb = net.known_embed.index_select(&known.to_dtype(DType::U32)?.flatten_all()?, 0)?.reshape((b, t, c))?;
        let cond = (temb + kemb)?.silu()?;

        // Rotary tables, partitioned once per window geometry.
        let (cos, sin) = rope_tables(cfg, tpos, hg, wg, dev)?;
        let plain = Windows { wy, wx, sy: 0, sx: 0 };
        let shifted = Windows {
            wy,
            wx,
            sy: if hg > wy { wy / 2 } else { 0 },
            sx: if wg > wx { wx / 2 } else { 0 },
        };
        let tables_plain = (plain.partition(&cos)?, plain.partition(&sin)?);
        let tables_shift = if net.blocks.iter().any(|b| b.shifted) {
            Some((shifted.partition(&cos)?, shifted.partition(&sin)?))
        } else {
            None
        };
        let max_scores = match mode {
            Mode::Inference => MAX_SCORES,
            Mode::Train => usize::MAX,
        };

        let mut kvs = Vec::with_capacity(net.blocks.len());
        for (i, block) in net.blocks.iter().enumerate() {
            let (win, (cs, sn)) = if block.shifted {
                (&shifted, tables_shift.as_ref().expect("built above"))
            } else {
                (&plain, &tables_plain)
            };
            let ctx = context.map(|c| &c[i]);
            let (nx, kv) = block.forward(&x, &cond, win, cs, sn, ctx, mode, max_scores)?;
            x = nx;
            if keep_kv {
                kvs.push(kv);
            }
        }
        if !head {
            return Ok((x, kvs));
        }

        // Final modulated projection back to patch pixels.
        let m = linear(&cond, &net.final_ada)?.reshape((b, t, 1, 1, 2 * c))?;
        let (shift, scale) = (m.narrow(D::Minus1, 0, c)?, m.narrow(D::Minus1, c, c)?);
        let x = modulate(&net.norm.forward(&x, mode)?, &shift, &scale)?;
        let x = linear(&x, &net.final_linear)?;
        let x = x
            .reshape(&[b, t, hg, wg, 3, p, p][..])?
            .permute([0, 1, 4, 2, 5, 3, 6])?
            .reshape((b, t, 3, hp, wp))?;
        Ok((x.narrow(3, 0, h)?.narrow(4, 0, w)?.contiguous()?, kvs))
    }
}

/// The known frames of a window, run once through every block: their
/// attention keys and values, reused at every sampling step.
pub struct KnownContext {
    kvs: Vec<(Tensor, Tensor)>,
    size: (usize, usize, usize),
}

/// Sinusoidal features of the flow time (scaled to 0..1000): `[B, T, dim]`.
fn timestep_features(t: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half).map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp()).collect();
    let freqs = Tensor::from_vec(freqs, (1, 1, half), t.device())?;
    let args = (t.to_dtype(DType::F32)?.unsqueeze(2)? * 1000.0)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], 2)
}

/// Rotary angles for every token, `[B, T, Hg, Wg, hd/2]` as (cos, sin).
fn rope_tables(cfg: &Config, tpos: &Tensor, hg: usize, wg: usize, dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let (dt, dy, dx) = cfg.rope_split();
    let freqs = |n: usize| -> Vec<f32> {
        (0..n / 2).map(|i| (cfg.rope_theta as f32).powf(-(2.0 * i as f32) / n as f32)).collect()
    };
    let (ft, fy, fx) = (freqs(dt), freqs(dy), freqs(dx));
    let (b, t) = tpos.dims2()?;
    let ft = Tensor::from_vec(ft.clone(), (1, 1, 1, 1, ft.len()), dev)?;
    let at = tpos.to_dtype(DType::F32)?.reshape((b, t, 1, 1, 1))?.broadcast_mul(&ft)?;
    let at = at.broadcast_as((b, t, hg, wg, dt / 2))?;
    let ay: Vec<f32> = (0..hg).flat_map(|y| fy.iter().map(move |f| y as f32 * f)).collect();
    let ay = Tensor::from_vec(ay, (1, 1, hg, 1, dy / 2), dev)?.broadcast_as((b, t, hg, wg, dy / 2))?;
    let ax: Vec<f32> = (0..wg).flat_map(|x| fx.iter().map(move |f| x as f32 * f)).collect();
    let ax = Tensor::from_vec(ax, (1, 1, 1, wg, dx / 2), dev)?.broadcast_as((b, t, hg, wg, dx / 2))?;
    let angles = Tensor::cat(&[at.contiguous()?, ay.contiguous()?, ax.contiguous()?], 4)?;
    Ok((angles.cos()?, angles.sin()?))
}
