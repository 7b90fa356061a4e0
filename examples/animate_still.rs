//! Turns a still image into a short clip with the library API, streaming the
//! generated frames to disk as soon as each is fixed.
//!
//! cargo run --release --example animate_still -- MODEL_DIR STILL_IMAGE N OUT_PREFIX [SEED]
//!
//! Writes OUT_PREFIX-0.png (the still, unchanged) .. OUT_PREFIX-(N-1).png.

#[path = "common/stills.rs"]
mod stills;

use anyhow::{Context, bail};
use stills::{read_still, write_png};
use weft::{GenerateOptions, Model, Plan};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: animate_still MODEL_DIR STILL_IMAGE N OUT_PREFIX [SEED]");
    }
    let model = if args[0] == "embedded" { Model::embedded()? } else { Model::load(&args[0])? };
    let still = read_still(&args[1])?;
    let n: usize = args[2].parse().context("N must be a number")?;
    let seed = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let prefix = &args[3];

    write_png(&still, &format!("{prefix}-0.png"))?;
    // The plan: slot 0 known, slots 1..n to generate. run_plan streams them.
    let plan = Plan::animate(&still, n);
    let opts = GenerateOptions { seed, ..Default::default() };
    let report = weft::run_plan(&model, &plan, &opts, |pos, frame| -> anyhow::Result<()> {
        let path = format!("{prefix}-{pos}.png");
        write_png(&frame, &path)?;
        println!("{path}");
        Ok(())
    })?;
    eprintln!("made by {}", report.describe());
    Ok(())
}
