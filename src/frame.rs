//! Frames as the model room sees them: packed 8-bit RGB, row-major, no padding.
//! The pipeline and the plugin convert from their own pixel formats into this.

use crate::error::{Result, WeftError};

/// One video frame: `width * height * 3` bytes of packed RGB.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{} rgb)", self.width, self.height)
    }
}

impl Frame {
    /// Wraps packed RGB bytes. Fails when the size is zero or the buffer length
    /// is not `width * height * 3`.
    pub fn from_rgb(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(WeftError::BadFrame(format!("frame size {width}x{height} is empty")));
        }
        let need = width
            .checked_mul(height)
            .and_then(|p| p.checked_mul(3))
            .ok_or_else(|| WeftError::BadFrame(format!("frame size {width}x{height} is too large")))?;
        if data.len() != need {
            return Err(WeftError::BadFrame(format!(
                "{width}x{height} RGB frame needs {need} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self { width, height, data })
    }

    /// A frame filled with one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Result<Self> {
        let n = width.saturating_mul(height);
        Self::from_rgb(width, height, rgb.iter().copied().cycle().take(n.saturating_mul(3)).collect())
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// Packed RGB bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
    /// A frame from a planar `[3, H, W]` f32 tensor (any device) of values
    /// `v` mapped to `v * scale + offset` 8-bit levels, rounded and clamped.
    pub fn from_planar(t: &candle_core::Tensor, scale: f64, offset: f64) -> Result<Self> {
        let (_, h, w) = t.dims3()?;
        let bytes = t
            .affine(scale, offset)?
            .round()?
            .clamp(0f32, 255f32)?
            .permute((1, 2, 0))?
            .to_dtype(candle_core::DType::U8)?
            .flatten_all()?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec1::<u8>()?;
        Self::from_rgb(w, h, bytes)
    }

    /// The RGB value at (x, y).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}
