//! Colour, sharpness and saturation drift of an extended clip, per second,
//! against its last second of real frames (`weft::eval::drift`).
//!
//! cargo run --release --example drift -- CLIP (--known N | --known-seconds S) [--max-side PX] [--json]
//!
//! CLIP is what `weft extend` wrote (the real frames followed by the generated
//! ones); `--known` says how many frames at its start are real. `--max-side`
//! scales frames down before measuring (the same for real and generated).

use anyhow::{Context, bail};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: drift CLIP (--known N | --known-seconds S) [--max-side PX] [--json]";
    let (mut clip, mut known, mut known_s, mut max_side, mut json) = (None, None, None, None, false);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--known" => known = Some(value()?.parse::<usize>().context("--known: a frame count")?),
            "--known-seconds" => known_s = Some(value()?.parse::<f64>().context("--known-seconds: seconds")?),
            "--max-side" => max_side = Some(value()?.parse::<usize>().context("--max-side: pixels")?),
            "--json" => json = true,
            _ if clip.is_none() && !a.starts_with("--") => clip = Some(a),
            _ => bail!("unknown argument {a}; {usage}"),
        }
    }
    let clip = clip.context(usage)?;
    let path = Path::new(&clip);
    let rate = weft::pipeline::frame_rate(path)?;
    let fps = rate.as_f64();
    let known = match (known, known_s) {
        (Some(n), None) => n,
        (None, Some(s)) => weft::pipeline::frames_for_seconds(s, rate)?,
        _ => bail!("give one of --known or --known-seconds; {usage}"),
    };
    let frames = weft::pipeline::decode_rgb(path, None, max_side)?;
    let report = weft::eval::drift::drift(&frames, known, fps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{clip}: {known} real frames, {} generated, {fps:.3} fps", frames.len() - known);
        print!("{}", weft::eval::drift::table(&report));
    }
    Ok(())
}
