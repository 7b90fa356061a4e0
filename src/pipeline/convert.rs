//! Pixel-format conversion with swscale: decoded frames to the model's packed
//! RGB and back. Only generated frames and model context go through here;
//! frames that were present are encoded from the decoded originals.

use ffmpeg_next as ff;
use ff::format::Pixel;
use ff::software::scaling::{Context as Sws, Flags};
use ff::util::color;
use ff::util::frame::Video;

use crate::frame::Frame;

/// swscale's colour-space constant for a frame's colour space; unspecified
/// spaces follow the usual player rule (HD is BT.709, SD BT.601).
fn sws_space(space: color::Space, height: u32) -> i32 {
    use color::Space as S;
    match space {
        S::BT709 => 1,
        S::FCC => 4,
        S::BT470BG | S::SMPTE170M => 5,
        S::SMPTE240M => 7,
        S::BT2020NCL | S::BT2020CL => 9,
        _ if height >= 720 => 1,
        _ => 5,
    }
}

fn is_full_range(range: color::Range, fmt: Pixel) -> bool {
    matches!(range, color::Range::JPEG)
        || matches!(fmt, Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P)
}

/// What a cached swscale context converts: source and target format and
/// size, colour space, source and target full range.
type Key = (Pixel, u32, u32, Pixel, u32, u32, i32, bool, bool);

/// A cached converter between one source layout and one target layout.
pub(crate) struct Converter {
    sws: Option<(Sws, Key)>,
}

impl Converter {
    pub fn new() -> Self {
        Self { sws: None }
    }

    /// Converts `src` into a new frame of `fmt` at `w`x`h`. `space`: the
    /// YUV side's colour space; `src_full` / `dst_full`: full-range levels.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        src: &Video,
        fmt: Pixel,
        w: u32,
        h: u32,
        space: color::Space,
        src_full: bool,
        dst_full: bool,
    ) -> Result<Video, String> {
        let yuv_h = if is_rgb(src.format()) { h } else { src.height() };
        let cs = sws_space(space, yuv_h);
        let key = (src.format(), src.width(), src.height(), fmt, w, h, cs, src_full, dst_full);
        if self.sws.as_ref().map(|s| s.1) != Some(key) {
            let flags = Flags::BICUBIC | Flags::ACCURATE_RND | Flags::FULL_CHR_H_INT | Flags::FULL_CHR_H_INP;
            let mut sws = Sws::get(src.format(), src.width(), src.height(), fmt, w, h, flags).map_err(|e| {
                format!("cannot convert pixel format {:?} to {:?}: {e}", src.format(), fmt)
            })?;
            unsafe {
                let coeffs = ff::ffi::sws_getCoefficients(cs);
                ff::ffi::sws_setColorspaceDetails(
                    sws.as_mut_ptr(),
                    coeffs,
                    src_full as i32,
                    coeffs,
                    dst_full as i32,
                    0,
                    1 << 16,
                    1 << 16,
                );
            }
            self.sws = Some((sws, key));
        }
        let mut out = Video::new(fmt, w, h);
        let sws = &mut self.sws.as_mut().expect("set above").0;
        sws.run(src, &mut out).map_err(|e| format!("pixel conversion failed: {e}"))?;
        Ok(out)
    }

    /// A decoded frame as packed RGB for the model (full size).
    pub fn rgb_of(&mut self, src: &Video) -> Result<Frame, String> {
        self.rgb_scaled_of(src, src.width(), src.height())
    }

    /// A decoded frame as packed RGB at `w`x`h` (for quick analysis).
    pub fn rgb_scaled_of(&mut self, src: &Video, w: u32, h: u32) -> Result<Frame, String> {
        let src_full = is_rgb(src.format()) || is_full_range(src.color_range(), src.format());
        let rgb = self.run(src, Pixel::RGB24, w, h, src.color_space(), src_full, true)?;
        Ok(packed(&rgb))
    }

    /// A decoded frame converted to another pixel format / size (when the
    /// encoder cannot take the source's), described by `target`.
    pub fn convert(&mut self, src: &Video, fmt: Pixel, w: u32, h: u32, target: &Colour) -> Result<Video, String> {
        let src_rgb = is_rgb(src.format());
        let space = if src_rgb { target.space } else { src.color_space() };
        let src_full = src_rgb || is_full_range(src.color_range(), src.format());
        let dst_full = is_rgb(fmt) || is_full_range(target.range, fmt);
        let mut out = self.run(src, fmt, w, h, space, src_full, dst_full)?;
        target.apply(&mut out);
        Ok(out)
    }

    /// An RGB frame as a frame of `fmt` with the colour properties of `like`.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_rgb_frame(&mut self, rgb: &Frame, fmt: Pixel, like: &Colour) -> Result<Video, String> {
        let (w, h) = (rgb.width() as u32, rgb.height() as u32);
        let mut src = Video::new(Pixel::RGB24, w, h);
        let stride = src.stride(0);
        let row = rgb.width() * 3;
        let plane = src.data_mut(0);
        for (y, line) in rgb.data().chunks_exact(row).enumerate() {
            plane[y * stride..y * stride + row].copy_from_slice(line);
        }
        let dst_full = is_rgb(fmt) || is_full_range(like.range, fmt);
        let mut out = self.run(&src, fmt, w, h, like.space, true, dst_full)?;
        like.apply(&mut out);
        Ok(out)
    }
}

/// The colour description of a stream, given to converted frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Colour {
    pub space: color::Space,
    pub range: color::Range,
    pub primaries: color::Primaries,
    pub transfer: color::TransferCharacteristic,
}

impl Colour {
    pub fn of(f: &Video) -> Self {
        Self {
            space: f.color_space(),
            range: f.color_range(),
            primaries: f.color_primaries(),
            transfer: f.color_transfer_characteristic(),
        }
    }
    /// The description for YUV made from RGB: limited range, BT.709 for
    /// HD and BT.601 below.
    pub fn for_rgb_source(height: u32) -> Self {
        let hd = height >= 720;
        Self {
            space: if hd { color::Space::BT709 } else { color::Space::BT470BG },
            range: color::Range::MPEG,
            primaries: if hd { color::Primaries::BT709 } else { color::Primaries::Unspecified },
            transfer: if hd { color::TransferCharacteristic::BT709 } else { color::TransferCharacteristic::Unspecified },
        }
    }

    pub fn apply(&self, f: &mut Video) {
        f.set_color_space(self.space);
        f.set_color_range(self.range);
        f.set_color_primaries(self.primaries);
        f.set_color_transfer_characteristic(self.transfer);
    }
}

pub(crate) fn is_rgb(fmt: Pixel) -> bool {
    unsafe {
        let d = ff::ffi::av_pix_fmt_desc_get(fmt.into());
        !d.is_null() && ((*d).flags & ff::ffi::AV_PIX_FMT_FLAG_RGB as u64) != 0
    }
}

/// Packs an RGB24 frame's rows (dropping stride padding).
fn packed(rgb: &Video) -> Frame {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let stride = rgb.stride(0);
    let plane = rgb.data(0);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        data.extend_from_slice(&plane[y * stride..y * stride + w * 3]);
    }
    Frame::from_rgb(w, h, data).expect("swscale output has the requested size")
}

/// Whether swscale can read / write this pixel format.
pub(crate) fn supported(fmt: Pixel) -> (bool, bool) {
    unsafe {
        let f: ff::ffi::AVPixelFormat = fmt.into();
        (ff::ffi::sws_isSupportedInput(f) > 0, ff::ffi::sws_isSupportedOutput(f) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_round_trip_through_yuv444_is_close() {
        ff::init().unwrap();
        let (w, h) = (48usize, 32usize);
        let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 200 + 20) as u8).collect();
        let rgb = Frame::from_rgb(w, h, data).unwrap();
        let mut c = Converter::new();
        let like = Colour {
            space: color::Space::BT709,
            range: color::Range::MPEG,
            primaries: color::Primaries::BT709,
            transfer: color::TransferCharacteristic::BT709,
        };
        let yuv = c.from_rgb_frame(&rgb, Pixel::YUV444P, &like).unwrap();
        assert_eq!(yuv.color_space(), color::Space::BT709);
        let mut c2 = Converter::new();
        let back = c2.rgb_of(&yuv).unwrap();
        assert_eq!((back.width(), back.height()), (w, h));
        let mad = crate::analysis::mean_abs_diff(&rgb, &back);
        assert!(mad < 3.0, "round trip differs by {mad}");
    }
}
