//! Stills in and out for the examples: any image FFmpeg reads (PNG, JPEG, ...)
//! in, 8-bit RGB PNG out.

use anyhow::Context;
use std::{fs::File, io::BufWriter, path::Path};
use weft::Frame;

/// The first (or only) picture of an image file, as RGB.
pub fn read_still(path: &str) -> anyhow::Result<Frame> {
    let mut frames = weft::pipeline::decode_rgb(Path::new(path), Some(1), None)?;
    Ok(frames.remove(0))
}

/// Writes `f` as a PNG. The file appears complete or not at all: it is written
/// under a temporary name and renamed when done.
pub fn write_png(f: &Frame, path: &str) -> anyhow::Result<()> {
    let tmp = format!("{path}.part");
    let written = (|| -> anyhow::Result<()> {
        let file = File::create(&tmp)?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), f.width() as u32, f.height() as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(f.data())?;
        writer.finish()?;
        Ok(std::fs::rename(&tmp, path)?)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {path}"))
}
