//! PNG in and out for the examples (8-bit RGB frames), with the `png` crate.

use anyhow::{Context, bail};
use std::{fs::File, io::BufReader, io::BufWriter};
use weft::Frame;

/// Reads any 8- or 16-bit PNG (grey, grey+alpha, RGB, RGBA, palette) as RGB;
/// alpha is dropped.
pub fn read_png(path: &str) -> anyhow::Result<Frame> {
    let file = File::open(path).with_context(|| format!("reading {path}"))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().with_context(|| format!("{path}: not a PNG"))?;
    let size = reader.output_buffer_size().with_context(|| format!("{path}: image too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).with_context(|| format!("{path}: corrupt PNG"))?;
    let px = &buf[..info.buffer_size()];
    let rgb: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => px.to_vec(),
        png::ColorType::Rgba => px.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => px.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        other => bail!("{path}: unsupported PNG colour type {other:?}"),
    };
    Ok(Frame::from_rgb(info.width as usize, info.height as usize, rgb)?)
}

pub fn write_png(f: &Frame, path: &str) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("writing {path}"))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), f.width() as u32, f.height() as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().with_context(|| format!("writing {path}"))?;
    writer.write_image_data(f.data()).with_context(|| format!("writing {path}"))?;
    writer.finish().with_context(|| format!("writing {path}"))
}
