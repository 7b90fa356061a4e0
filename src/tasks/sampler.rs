//! Rectified-flow sampling of one model window with Euler steps.
//!
//! `x_t = (1 - t) * clean + t * noise`; the model predicts `v = noise - clean`;
//! integrating from t = 1 (noise) to t = 0 gives the frames. Noise is drawn on
//! the CPU from a ChaCha RNG so the same seed gives bit-identical output on
//! the same machine whatever the device.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::error::Result;
use crate::frame::Frame;
use crate::model::{Mode, Model, WindowBatch};

/// One slot of a model window: its time position and, if known, its frame.
pub(crate) struct WindowSlot<'f> {
    pub tpos: f32,
    pub frame: Option<&'f Frame>,
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
    let (_, h, w) = t.dims3()?;
    let bytes = t
        .affine(127.5, 127.5)?
        .round()?
        .clamp(0f32, 255f32)?
        .permute((1, 2, 0))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_vec1::<u8>()?;
    Frame::from_rgb(w, h, bytes)
}

/// Standard-normal noise for one frame, `[3, H, W]`.
fn noise(rng: &mut rand_chacha::ChaCha8Rng, h: usize, w: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let n = 3 * h * w;
    let v: Vec<f32> = (0..n).map(|_| rand_distr::StandardNormal.sample(rng)).collect();
    Tensor::from_vec(v, (3, h, w), dev)
}

/// First guess for slot `i`: the cross-fade of the nearest known slots on
/// each side at their time distances, or the nearest one when only one side
/// has any.
fn guess(slots: &[WindowSlot<'_>], known: &[Option<Tensor>], i: usize) -> candle_core::Result<Tensor> {
    let t = slots[i].tpos;
    let before = (0..i).rev().find(|&j| known[j].is_some());
    let after = (i + 1..slots.len()).find(|&j| known[j].is_some());
    match (before, after) {
        (Some(a), Some(b)) => {
            let (ta, tb) = (slots[a].tpos, slots[b].tpos);
            let s = ((t - ta) / (tb - ta)) as f64;
            let (ka, kb) = (known[a].as_ref().unwrap(), known[b].as_ref().unwrap());
            (ka * (1.0 - s))? + (kb * s)?
        }
        (Some(j), None) | (None, Some(j)) => Ok(known[j].clone().unwrap()),
        (None, None) => candle_core::bail!("window has no known frame"),
    }
}

/// Generates the unknown slots of a window; returns them in slot order.
/// `strength` is the flow time sampling starts from: 1 = pure noise, below 1
/// starts from the cross-fade guess noised to that level (fewer steps needed,
/// and the result stays close to the footage).
pub(crate) fn sample_window(
    model: &Model,
    slots: &[WindowSlot<'_>],
    (w, h): (usize, usize),
    steps: usize,
    strength: f32,
    seed: u64,
) -> Result<Vec<Frame>> {
    let dev = model.device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let known: Vec<Option<Tensor>> =
        slots.iter().map(|s| s.frame.map(|f| frame_to_tensor(f, dev)).transpose()).collect::<candle_core::Result<_>>()?;
    let mut frames = Vec::with_capacity(slots.len());
    for i in 0..slots.len() {
        frames.push(match &known[i] {
            Some(t) => t.clone(),
            None => {
                let n = noise(&mut rng, h, w, dev)?;
                if strength >= 1.0 {
                    n
                } else {
                    // Start part-way: x_s = (1 - s) * guess + s * noise.
                    let g = guess(slots, &known, i)?;
                    ((g * (1.0 - strength) as f64)? + (n * strength as f64)?)?
                }
            }
        });
    }
    let t_len = slots.len();
    let mut x = Tensor::stack(&frames, 0)?.unsqueeze(0)?; // [1, T, 3, H, W]
    drop(frames);
    let unknown: Vec<u8> = slots.iter().map(|s| s.frame.is_none() as u8).collect();
    let known = Tensor::from_vec(slots.iter().map(|s| s.frame.is_some() as u32).collect::<Vec<_>>(), (1, t_len), dev)?;
    let tpos = Tensor::from_vec(slots.iter().map(|s| s.tpos).collect::<Vec<_>>(), (1, t_len), dev)?;
    let mask = Tensor::from_vec(unknown.clone(), (1, t_len, 1, 1, 1), dev)?;
    let mask_f = mask.to_dtype(DType::F32)?;

    for i in 0..steps {
        let t_cur = strength * (1.0 - i as f32 / steps as f32);
        let t_next = strength * (1.0 - (i + 1) as f32 / steps as f32);
        let tvals: Vec<f32> = unknown.iter().map(|&u| if u == 1 { t_cur } else { 0.0 }).collect();
        let t = Tensor::from_vec(tvals, (1, t_len), dev)?;
        let v = model.forward(&WindowBatch { x: &x, t: &t, known: &known, tpos: &tpos }, Mode::Inference)?;
        let step = ((v * (t_next - t_cur) as f64)?.broadcast_mul(&mask_f))?;
        let updated = (&x + step)?;
        x = mask.broadcast_as(x.shape())?.where_cond(&updated, &x)?;
    }

    let x = x.squeeze(0)?;
    let mut out = Vec::new();
    for (i, s) in slots.iter().enumerate() {
        if s.frame.is_none() {
            out.push(tensor_to_frame(&x.get(i)?)?);
        }
    }
    Ok(out)
}
