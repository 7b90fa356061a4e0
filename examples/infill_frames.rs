//! Generates the frames between two images with the library API.
//!
//! cargo run --release --example infill_frames -- MODEL_DIR BEFORE_IMAGE AFTER_IMAGE N OUT_PREFIX
//!
//! Images: PNG, JPEG or anything else FFmpeg reads. Writes OUT_PREFIX-1.png ..
//! OUT_PREFIX-N.png. MODEL_DIR may be `embedded`.

#[path = "common/stills.rs"]
mod stills;

use anyhow::{Context, bail};
use stills::{read_still, write_png};
use weft::{GenerateOptions, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, before, after, n, prefix] = args.as_slice() else {
        bail!("usage: infill_frames MODEL_DIR BEFORE_IMAGE AFTER_IMAGE N OUT_PREFIX");
    };
    let model = if model == "embedded" { Model::embedded()? } else { Model::load(model)? };
    let (before, after) = (read_still(before)?, read_still(after)?);
    let n: usize = n.parse().context("N must be a number")?;
    let opts = GenerateOptions { seed: 1, ..Default::default() };
    let frames = weft::infill(&model, &[before], &[after], n, &opts)?;
    for (i, f) in frames.iter().enumerate() {
        let path = format!("{prefix}-{}.png", i + 1);
        write_png(f, &path)?;
        println!("{path}");
    }
    Ok(())
}
