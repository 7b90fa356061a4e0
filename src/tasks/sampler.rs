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

/// Generates the unknown slots of a window; returns them in slot order.
pub(crate) fn sample_window(
    model: &Model,
    slots: &[WindowSlot<'_>],
    (w, h): (usize, usize),
    steps: usize,
    seed: u64,
) -> Result<Vec<Frame>> {
    let dev = model.device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut frames = Vec::with_capacity(slots.len());
    for s in slots {
        frames.push(match s.frame {
            Some(f) => frame_to_tensor(f, dev)?,
            None => noise(&mut rng, h, w, dev)?,
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
        let t_cur = 1.0 - i as f32 / steps as f32;
        let t_next = 1.0 - (i + 1) as f32 / steps as f32;
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
