//! The libx264 round trip of LTX-Video's conditioning frames, in memory:
//! what the official inference's `crf_compressor.compress` does (one frame
//! encoded as yuv420p with libx264 at a CRF, preset veryfast, and decoded
//! back), for [`crate::model::ltx::condition`]. Odd sizes are padded by
//! repeating the last row or column (yuv420p needs even ones) and cropped
//! back, so the frame keeps its size.

use ffmpeg_next as ff;
use ff::format::Pixel;
use ff::util::frame::Video;
use ff::{Dictionary, Packet, Rational, codec};

use super::convert::{Colour, Converter};
use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::ltx::condition::{Compressor, MAX_CRF};

/// The official inference's x264 preset.
pub const PRESET: &str = "veryfast";

/// [`round_trip`] as the conditioning's codec
/// ([`LtxSettings::condition_codec`](crate::model::ltx::generate::LtxSettings::condition_codec)).
pub fn libx264() -> Compressor {
    Compressor::new(round_trip)
}

fn codec_err(what: &str, e: impl std::fmt::Display) -> WeftError {
    WeftError::Codec(format!("{what}: {e}"))
}

/// `frame` encoded by libx264 at `crf` (1..=51) and decoded again: lossy,
/// the same size, the same bytes for the same frame (one encoder thread).
pub fn round_trip(frame: &Frame, crf: u32) -> Result<Frame> {
    if !(1..=MAX_CRF).contains(&crf) {
        return Err(WeftError::BadOptions(format!("libx264 CRF must be in 1..={MAX_CRF}, got {crf}")));
    }
    // FFmpeg initialised with its log quiet (libx264 would print its
    // statistics for every frame).
    super::init();
    let even = pad_even(frame)?;
    let like = Colour::for_rgb_source(even.height() as u32);
    let mut yuv = Converter::new().from_rgb_frame(&even, Pixel::YUV420P, &like).map_err(WeftError::Codec)?;
    yuv.set_pts(Some(0));
    let packets = encode(&yuv, crf, &like)?;
    let decoded = decode(&packets)?;
    let rgb = Converter::new().rgb_of(&decoded).map_err(WeftError::Codec)?;
    crop(&rgb, frame.width(), frame.height())
}

/// One yuv420p frame through libx264: its packets.
fn encode(yuv: &Video, crf: u32, like: &Colour) -> Result<Vec<Packet>> {
    let x264 = ff::encoder::find_by_name("libx264")
        .ok_or_else(|| WeftError::Codec("this FFmpeg has no libx264 encoder".into()))?;
    let mut enc =
        codec::context::Context::new_with_codec(x264).encoder().video().map_err(|e| codec_err("libx264", e))?;
    enc.set_width(yuv.width());
    enc.set_height(yuv.height());
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(Rational::new(1, 1));
    enc.set_frame_rate(Some(Rational::new(1, 1)));
    enc.set_colorspace(like.space);
    enc.set_color_range(like.range);
    let mut dict = Dictionary::new();
    dict.set("crf", &crf.to_string());
    dict.set("preset", PRESET);
    // One thread: the same bytes on any machine.
    dict.set("threads", "1");
    let mut enc = enc.open_with(dict).map_err(|e| codec_err("cannot open libx264", e))?;
    enc.send_frame(yuv).map_err(|e| codec_err("libx264 encoding", e))?;
    enc.send_eof().map_err(|e| codec_err("libx264 encoding", e))?;
    let mut packets = Vec::new();
    loop {
        let mut p = Packet::empty();
        match enc.receive_packet(&mut p) {
            Ok(()) => packets.push(p),
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(codec_err("libx264 encoding", e)),
        }
    }
    Ok(packets)
}

/// The first frame of H.264 `packets`.
fn decode(packets: &[Packet]) -> Result<Video> {
    let h264 = ff::decoder::find(codec::Id::H264).ok_or_else(|| WeftError::Codec("this FFmpeg has no H.264 decoder".into()))?;
    let mut dec =
        codec::context::Context::new_with_codec(h264).decoder().video().map_err(|e| codec_err("H.264 decoder", e))?;
    for p in packets {
        dec.send_packet(p).map_err(|e| codec_err("H.264 decoding", e))?;
    }
    dec.send_eof().map_err(|e| codec_err("H.264 decoding", e))?;
    let mut out = Video::empty();
    dec.receive_frame(&mut out).map_err(|e| codec_err("H.264 decoding gave no frame", e))?;
    Ok(out)
}

/// `f` with its last column and row repeated up to even sizes.
fn pad_even(f: &Frame) -> Result<Frame> {
    let (w, h) = (f.width(), f.height());
    if w % 2 == 0 && h % 2 == 0 {
        return Ok(f.clone());
    }
    let (ew, eh) = (w + w % 2, h + h % 2);
    let mut data = Vec::with_capacity(ew * eh * 3);
    for y in 0..eh {
        let row = &f.data()[y.min(h - 1) * w * 3..][..w * 3];
        data.extend_from_slice(row);
        if ew > w {
            data.extend_from_slice(&row[(w - 1) * 3..]);
        }
    }
    Frame::from_rgb(ew, eh, data)
}

/// The top-left `w` x `h` of `f`.
fn crop(f: &Frame, w: usize, h: usize) -> Result<Frame> {
    if (f.width(), f.height()) == (w, h) {
        return Ok(f.clone());
    }
    let data = f.data().chunks_exact(f.width() * 3).take(h).flat_map(|row| &row[..w * 3]).copied().collect();
    Frame::from_rgb(w, h, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth picture: a diagonal gradient with a soft-edged disc (what
    /// a codec is made for; noise would not survive any CRF).
    fn picture(w: usize, h: usize) -> Frame {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let d = ((fx - 0.6).powi(2) + (fy - 0.45).powi(2)).sqrt();
                let disc = (1.0 - ((d - 0.22) / 0.04).clamp(0.0, 1.0)) * 120.0;
                data.push((40.0 + 150.0 * fx + disc * 0.5) as u8);
                data.push((60.0 + 120.0 * fy) as u8);
                data.push((200.0 - 140.0 * fx * fy + disc * 0.4).min(255.0) as u8);
            }
        }
        Frame::from_rgb(w, h, data).unwrap()
    }

    #[test]
    fn the_round_trip_is_lossy_but_keeps_the_size() {
        for (w, h) in [(96, 64), (75, 49)] {
            let f = picture(w, h);
            let back = round_trip(&f, 29).unwrap();
            assert_eq!((back.width(), back.height()), (w, h));
            assert_ne!(back.data(), f.data(), "{w}x{h}: CRF 29 is lossy");
            let mad = crate::analysis::mean_abs_diff(&f, &back);
            assert!(mad > 0.05 && mad < 4.0, "{w}x{h}: a smooth picture comes back close, off by {mad}");
            // Harder compression loses more; the same frame gives the same bytes.
            let worse = crate::analysis::mean_abs_diff(&f, &round_trip(&f, 51).unwrap());
            assert!(worse > mad, "{w}x{h}: CRF 51 {worse} vs CRF 29 {mad}");
            assert_eq!(round_trip(&f, 29).unwrap(), back);
        }
        let e = round_trip(&picture(8, 8), 0).unwrap_err().to_string();
        assert!(e.contains("libx264 CRF must be in 1..=51, got 0"), "{e}");
        // Through the conditioning's hook, with its size check.
        let c = libx264();
        assert_eq!(c.compress(&picture(33, 17), 20).unwrap().width(), 33);
    }

    #[test]
    fn odd_sizes_are_padded_by_repeating_edges_and_cropped_back() {
        let f = picture(5, 3);
        let p = pad_even(&f).unwrap();
        assert_eq!((p.width(), p.height()), (6, 4));
        assert_eq!(p.pixel(5, 1), f.pixel(4, 1));
        assert_eq!(p.pixel(2, 3), f.pixel(2, 2));
        assert_eq!(p.pixel(5, 3), f.pixel(4, 2));
        assert_eq!(crop(&p, 5, 3).unwrap(), f);
    }
}
