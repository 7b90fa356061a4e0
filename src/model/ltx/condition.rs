//! Conditioning frames made to look like the video LTX-Video was trained
//! on, as its official inference does (`ltx_video/inference.py`,
//! `load_image_to_tensor_with_resize_and_crop`): at the generation size, a
//! 3x3 Gaussian blur (`gaussian_blur(kernel_size=3, sigma=1.0)`, reflected
//! at the edges), then a libx264 round trip at a constant rate factor
//! (`crf_compressor.compress`, CRF 29, preset veryfast, yuv420p).
//!
//! Both are off by default ([`LtxSettings::condition_blur`] 0,
//! [`LtxSettings::condition_crf`] 0). They apply to the frames that
//! condition a window only: the known frames a job hands back are the
//! caller's, byte-identical. The codec is the caller's ([`Compressor`]): the
//! model room runs no codec; `weft::pipeline::condition::libx264` is one.

use std::sync::Arc;

use candle_core::Tensor;

use super::generate::LtxSettings;
use crate::error::{Result, WeftError};
use crate::frame::Frame;

/// The official inference's blur: sigma 1 over 3x3 taps.
pub const OFFICIAL_BLUR_SIGMA: f64 = 1.0;
/// The official inference's constant rate factor (`crf_compressor.compress`).
pub const OFFICIAL_CRF: u32 = 29;
/// Largest blur sigma (over 3 taps the kernel is a box filter long before).
pub const MAX_BLUR_SIGMA: f64 = 10.0;
/// Largest libx264 constant rate factor.
pub const MAX_CRF: u32 = 51;

/// A lossy round trip of one frame through a video codec at a constant rate
/// factor (1..=[`MAX_CRF`]); the frame comes back at its size.
#[derive(Clone)]
pub struct Compressor(Arc<CompressFn>);

/// `(frame, crf) -> the frame after the codec's round trip`.
type CompressFn = dyn Fn(&Frame, u32) -> Result<Frame> + Send + Sync;

impl Compressor {
    pub fn new(f: impl Fn(&Frame, u32) -> Result<Frame> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// `frame` through the codec at `crf`.
    pub fn compress(&self, frame: &Frame, crf: u32) -> Result<Frame> {
        let out = (self.0)(frame, crf)?;
        if (out.width(), out.height()) != (frame.width(), frame.height()) {
            return Err(WeftError::Codec(format!(
                "a {}x{} frame came back {}x{}",
                frame.width(),
                frame.height(),
                out.width(),
                out.height()
            )));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

/// The same compressor (one shared function).
impl PartialEq for Compressor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Checks a blur sigma: 0 (off) or in (0, [`MAX_BLUR_SIGMA`]].
pub fn check_blur(sigma: f64) -> Result<()> {
    if sigma == 0.0 || (sigma.is_finite() && sigma > 0.0 && sigma <= MAX_BLUR_SIGMA) {
        return Ok(());
    }
    Err(WeftError::BadOptions(format!(
        "condition blur must be a Gaussian sigma in (0, {MAX_BLUR_SIGMA}] pixels (0: off; the official inference's is \
         {OFFICIAL_BLUR_SIGMA}), got {sigma}"
    )))
}

/// Checks a constant rate factor: 0 (off) or 1..=[`MAX_CRF`], with a codec.
pub fn check_crf(crf: u32, codec: Option<&Compressor>) -> Result<()> {
    if crf > MAX_CRF {
        return Err(WeftError::BadOptions(format!(
            "condition CRF must be in 1..={MAX_CRF} (0: off; the official inference's is {OFFICIAL_CRF}), got {crf}"
        )));
    }
    if crf > 0 && codec.is_none() {
        return Err(WeftError::BadOptions(format!(
            "condition CRF {crf} needs a codec for the round trip (weft::pipeline::condition::libx264, in builds with \
             the ffmpeg feature)"
        )));
    }
    Ok(())
}

/// The two outer taps and the centre tap of a 3-tap Gaussian of `sigma`
/// (torchvision's `_get_gaussian_kernel1d` for `kernel_size=3`).
fn taps(sigma: f64) -> (f64, f64) {
    let outer = (-0.5 / (sigma * sigma)).exp();
    let sum = 1.0 + 2.0 * outer;
    (outer / sum, 1.0 / sum)
}

/// `t` (`[..., H, W]`) blurred by the 3x3 Gaussian of `sigma`, one axis at a
/// time, the edges reflected (`reflect` padding: the row before the first
/// is the second); an axis of one pixel is left as it is.
pub fn blur(t: &Tensor, sigma: f64) -> Result<Tensor> {
    check_blur(sigma)?;
    if sigma == 0.0 {
        return Ok(t.clone());
    }
    let (outer, centre) = taps(sigma);
    let along = |t: &Tensor, dim: usize| -> candle_core::Result<Tensor> {
        let n = t.dim(dim)?;
        if n < 2 {
            return Ok(t.clone());
        }
        // x[i - 1] and x[i + 1], reflected at both ends.
        let prev = Tensor::cat(&[&t.narrow(dim, 1, 1)?, &t.narrow(dim, 0, n - 1)?], dim)?;
        let next = Tensor::cat(&[&t.narrow(dim, 1, n - 1)?, &t.narrow(dim, n - 2, 1)?], dim)?;
        (prev + next)?.affine(outer, 0.0)? + t.affine(centre, 0.0)?
    };
    let rank = t.rank();
    if rank < 2 {
        return Err(WeftError::BadFrame(format!("a blur needs an image of [..., H, W], got shape {:?}", t.dims())));
    }
    let h = along(t, rank - 2)?;
    Ok(along(&h, rank - 1)?)
}

/// What the conditioning does to each of its frames: [`FramePrep::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct FramePrep<'a> {
    pub blur: f64,
    pub crf: u32,
    pub codec: Option<&'a Compressor>,
}

impl<'a> FramePrep<'a> {
    /// The settings' preparation (checked).
    pub fn of(s: &'a LtxSettings) -> Result<Self> {
        check_blur(s.condition_blur)?;
        check_crf(s.condition_crf, s.condition_codec.as_ref())?;
        Ok(Self { blur: s.condition_blur, crf: s.condition_crf, codec: s.condition_codec.as_ref() })
    }

    /// Nothing to do.
    pub fn is_identity(&self) -> bool {
        self.blur == 0.0 && self.crf == 0
    }

    /// A conditioning frame `[1, 3, H, W]` (f32 in [-1, 1], at the
    /// generation size, before padding) prepared: blurred, then through the
    /// codec as 8-bit RGB, in this order (the official one).
    pub fn apply(&self, t: &Tensor) -> Result<Tensor> {
        if self.is_identity() {
            return Ok(t.clone());
        }
        let t = blur(t, self.blur)?;
        let (Some(codec), true) = (self.codec, self.crf > 0) else { return Ok(t) };
        let device = t.device().clone();
        let frame = Frame::from_planar(&t.squeeze(0)?.to_device(&candle_core::Device::Cpu)?, 127.5, 127.5)?;
        let back = codec.compress(&frame, self.crf)?;
        let planar = Tensor::from_vec(back.into_data(), (frame.height(), frame.width(), 3), &candle_core::Device::Cpu)?
            .permute((2, 0, 1))?
            .to_dtype(candle_core::DType::F32)?
            .affine(1.0 / 127.5, -1.0)?;
        Ok(planar.unsqueeze(0)?.to_device(&device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn blur_parameters_are_checked_in_one_line() {
        for ok in [0.0, 0.3, OFFICIAL_BLUR_SIGMA, MAX_BLUR_SIGMA] {
            check_blur(ok).unwrap();
        }
        for bad in [-1.0, f64::NAN, f64::INFINITY, MAX_BLUR_SIGMA + 0.5] {
            let e = check_blur(bad).unwrap_err().to_string();
            assert!(e.contains("condition blur must be a Gaussian sigma in (0, 10]"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let t = Tensor::zeros((3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(blur(&t, -2.0).is_err());
        for ok in [0, 1, OFFICIAL_CRF, MAX_CRF] {
            check_crf(ok, Some(&Compressor::new(|f, _| Ok(f.clone())))).unwrap();
        }
        let e = check_crf(52, None).unwrap_err().to_string();
        assert!(e.contains("condition CRF must be in 1..=51 (0: off; the official inference's is 29), got 52"), "{e}");
        let e = check_crf(29, None).unwrap_err().to_string();
        assert!(e.contains("needs a codec"), "{e}");
        check_crf(0, None).unwrap();
    }

    #[test]
    fn the_kernel_is_torchvisions_3x3_gaussian() {
        // An impulse away from the edges spreads into the outer product of
        // the 1-D taps: sigma 1 gives 0.2741, 0.4519, 0.2741.
        let mut v = vec![0f32; 25];
        v[12] = 1.0;
        let t = Tensor::from_vec(v, (1, 5, 5), &Device::Cpu).unwrap();
        let b = blur(&t, 1.0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let (o, c) = taps(1.0);
        assert!((o - 0.274_068).abs() < 1e-5 && (c - 0.451_863).abs() < 1e-5, "{o} {c}");
        assert!((b[2][2] as f64 - c * c).abs() < 1e-6);
        assert!((b[1][2] as f64 - o * c).abs() < 1e-6);
        assert!((b[1][1] as f64 - o * o).abs() < 1e-6);
        assert_eq!(b[0][0], 0.0);
        let mass = blur(&t, 1.0).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((mass - 1.0).abs() < 1e-6, "an inner impulse keeps its mass: {mass}");
        // Flat images stay flat, edges included (the padding reflects).
        let flat = Tensor::full(0.25f32, (1, 3, 4, 7), &Device::Cpu).unwrap();
        let d = (blur(&flat, 2.0).unwrap() - &flat).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "{d}");
        // Reflected, not repeated: the first column of [0, 1, 0, ...] takes
        // its two neighbours, both the 1 of the second column.
        let row = Tensor::new(&[[0f32, 1.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let r = blur(&row, 1.0).unwrap().to_vec2::<f32>().unwrap();
        assert!((r[0][0] as f64 - 2.0 * o).abs() < 1e-6, "{:?}", r);
        // A one-pixel-high image is blurred along its width only.
        assert!((r[0][1] as f64 - c).abs() < 1e-6, "{:?}", r);
    }

    #[test]
    fn prep_blurs_then_compresses_and_is_off_by_default() {
        let s = LtxSettings::default();
        let p = FramePrep::of(&s).unwrap();
        assert!(p.is_identity());
        let t = Tensor::arange(0f32, 48.0, &Device::Cpu).unwrap().affine(1.0 / 24.0, -1.0).unwrap().reshape((1, 3, 4, 4)).unwrap();
        let same = p.apply(&t).unwrap();
        assert_eq!(same.flatten_all().unwrap().to_vec1::<f32>().unwrap(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        // A codec that inverts every level: the blurred frame, quantised, inverted.
        let s = LtxSettings {
            condition_blur: 1.0,
            condition_crf: 29,
            condition_codec: Some(Compressor::new(|f, crf| {
                assert_eq!(crf, 29);
                Frame::from_rgb(f.width(), f.height(), f.data().iter().map(|v| 255 - v).collect())
            })),
            ..Default::default()
        };
        let out = FramePrep::of(&s).unwrap().apply(&t).unwrap();
        let blurred = blur(&t, 1.0).unwrap();
        let expect = Frame::from_planar(&blurred.squeeze(0).unwrap(), 127.5, 127.5).unwrap();
        let got = Frame::from_planar(&out.squeeze(0).unwrap(), 127.5, 127.5).unwrap();
        assert_eq!(got.data(), expect.data().iter().map(|v| 255 - v).collect::<Vec<_>>().as_slice());
        // A codec that changes the size is refused.
        let bad = Compressor::new(|_, _| Frame::filled(2, 2, [0, 0, 0]));
        let s = LtxSettings { condition_crf: 10, condition_codec: Some(bad), ..Default::default() };
        let e = FramePrep::of(&s).unwrap().apply(&t).unwrap_err().to_string();
        assert!(e.contains("a 4x4 frame came back 2x2"), "{e}");
    }
}
