//! Rectified-flow sampling of one model window with Euler steps.
//!
//! `x_t = (1 - t) * clean + t * x_1`; the model predicts `v = x_1 - clean`;
//! integrating from t = 1 to t = 0 gives the frames. `x_1` is pure noise for
//! the `noise` prior, else the prior's estimate plus `prior_noise` of noise
//! (see `tasks::prior`). Noise is drawn on
//! the CPU from a ChaCha RNG so the same seed gives bit-identical output on
//! the same machine whatever the device.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::error::Result;
use crate::frame::Frame;
use crate::model::{Prior, Transformer};

use super::prior::{Basis, Estimator, PairCache};

/// One slot of a model window: its time position and, if known, its frame;
/// for a slot to generate, where its estimate comes from in the plan, if
/// anywhere (the real frames around it, or the plan's only still; see
/// `tasks::prior`).
pub(crate) struct WindowSlot<'f> {
    pub tpos: f32,
    pub frame: Option<&'f Frame>,
    pub basis: Option<Basis<'f>>,
}

/// Packed RGB -> `[3, H, W]` f32 in [-1, 1].
pub(crate) fn frame_to_tensor(f: &Frame, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_slice(f.data(), (f.height(), f.width(), 3), dev)?
        .to_dtype(DType::F32)?
        .affine(1.0 / 127.5, -1.0)?
        .permute((2, 0, 1))
}

/// `[3, H, W]` f32 in [-1, 1] -> packed RGB, rounded and clamped.
pub(crate) fn tensor_to_frame(t: &Tensor) -> Result<Frame> {
    Frame::from_planar(t, 127.5, 127.5)
}

/// Standard-normal noise for one frame, `[3, H, W]`.
fn noise(rng: &mut rand_chacha::ChaCha8Rng, h: usize, w: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let n = 3 * h * w;
    let v: Vec<f32> = (0..n).map(|_| rand_distr::StandardNormal.sample(rng)).collect();
    Tensor::from_vec(v, (3, h, w), dev)
}

/// Generates the unknown slots of a window; returns them in slot order.
/// `strength` is the flow time sampling starts from: at 1 the model's prior
/// (pure noise, or its estimate plus a little noise); below 1 part-way along
/// the path from there (fewer steps, closer to the estimate; for the noise
/// prior the cross-fade of the neighbours, noised to that level).
pub(crate) fn sample_window(
    model: &Transformer,
    slots: &[WindowSlot<'_>],
    (w, h): (usize, usize),
    steps: usize,
    strength: f32,
    seed: u64,
    pairs: &mut PairCache<'_>,
) -> Result<Vec<Frame>> {
    let dev = model.device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let cfg = model.config();
    let estimate_slots: Vec<(f32, Option<&Frame>)> = slots.iter().map(|s| (s.tpos, s.frame)).collect();
    let bases: Vec<Option<Basis<'_>>> = slots.iter().map(|s| s.basis).collect();
    // The flow's start: the prior's estimates (a bridge), or for the noise
    // prior the cross-fade only when starting part-way (strength < 1).
    let prior = match cfg.prior {
        Prior::Noise if strength == 1.0 => None,
        p => Some(
            super::prior::estimates_from(Estimator::Prior(p), &estimate_slots, &bases, pairs)?
                .into_iter()
                .map(|(f, _)| f)
                .collect::<Vec<_>>(),
        ),
    };
    let mut start = Vec::new();
    for k in 0..slots.iter().filter(|s| s.frame.is_none()).count() {
        let n = noise(&mut rng, h, w, dev)?;
        start.push(match (&prior, cfg.prior) {
            (None, _) => n,
            // x_s = (1 - s) * guess + s * noise.
            (Some(p), Prior::Noise) => {
                ((frame_to_tensor(&p[k], dev)? * (1.0 - strength) as f64)? + (n * strength as f64)?)?
            }
            // Bridge: x_1 = prior + sigma * noise, so x_s = prior + s * sigma * noise.
            (Some(p), _) => (frame_to_tensor(&p[k], dev)? + (n * (strength * cfg.prior_noise) as f64)?)?,
        });
    }
    drop(prior);
    let known: Vec<Option<Tensor>> =
        slots.iter().map(|s| s.frame.map(|f| frame_to_tensor(f, dev)).transpose()).collect::<candle_core::Result<_>>()?;
    let tu = start.len();
    let mut x = Tensor::stack(&start, 0)?.unsqueeze(0)?; // [1, Tu, 3, H, W]
    drop(start);
    let pos = |want_known: bool| -> Vec<f32> {
        slots.iter().filter(|s| s.frame.is_some() == want_known).map(|s| s.tpos).collect()
    };
    let (tpos_known, tpos_gen) = (pos(true), pos(false));
    let clean: Vec<Tensor> = known.into_iter().flatten().collect();
    let context = model.encode_known(
        &Tensor::stack(&clean, 0)?.unsqueeze(0)?,
        &Tensor::from_vec(tpos_known.clone(), (1, tpos_known.len()), dev)?,
    )?;
    drop(clean);
    let tpos = Tensor::from_vec(tpos_gen, (1, tu), dev)?;

    for i in 0..steps {
        let t_cur = strength * (1.0 - i as f32 / steps as f32);
        let t_next = strength * (1.0 - (i + 1) as f32 / steps as f32);
        let t = Tensor::full(t_cur, (1, tu), dev)?;
        let v = model.forward_generating(&context, &x, &t, &tpos)?;
        x = (x + (v * (t_next - t_cur) as f64)?)?;
    }

    let x = x.squeeze(0)?;
    let mut out = Vec::with_capacity(tu);
    for i in 0..tu {
        out.push(tensor_to_frame(&x.get(i)?)?);
    }
    Ok(out)
}
