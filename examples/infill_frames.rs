//! Generates the frames between two images with the library API.
//!
//! cargo run --release --example infill_frames -- MODEL_DIR BEFORE.png AFTER.png N OUT_PREFIX
//!
//! Writes OUT_PREFIX-1.png .. OUT_PREFIX-N.png. MODEL_DIR may be `embedded`.

use anyhow::{Context, bail};
use weft::{Frame, GenerateOptions, Model};

fn read_png(path: &str) -> anyhow::Result<Frame> {
    let img = image::open(path).with_context(|| format!("reading {path}"))?.to_rgb8();
    Ok(Frame::from_rgb(img.width() as usize, img.height() as usize, img.into_raw())?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, before, after, n, prefix] = args.as_slice() else {
        bail!("usage: infill_frames MODEL_DIR BEFORE.png AFTER.png N OUT_PREFIX");
    };
    let model = if model == "embedded" { Model::embedded()? } else { Model::load(model)? };
    let (before, after) = (read_png(before)?, read_png(after)?);
    let n: usize = n.parse().context("N must be a number")?;
    let opts = GenerateOptions { seed: 1, ..Default::default() };
    let frames = weft::infill(&model, &[before], &[after], n, &opts)?;
    for (i, f) in frames.iter().enumerate() {
        let path = format!("{prefix}-{}.png", i + 1);
        image::RgbImage::from_raw(f.width() as u32, f.height() as u32, f.data().to_vec())
            .expect("frame size")
            .save(&path)?;
        println!("{path}");
    }
    Ok(())
}
