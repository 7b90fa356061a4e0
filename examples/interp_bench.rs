//! Times weft's RIFE interpolator (the embedded default) on two raw rgb24
//! frames, one interpolation at t = 0.5 per run after a warm-up; prints one
//! JSON line (`scripts/bench-interp` runs it beside PyTorch's).
//!
//! cargo run --release --example interp_bench -- A.rgb B.rgb WxH [REPEAT]

use std::time::Instant;

use weft::{Frame, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: interp_bench A.rgb B.rgb WxH [REPEAT]");
    let (w, h) = args[2].split_once('x').ok_or_else(|| anyhow::anyhow!("size must be WxH, got {}", args[2]))?;
    let (w, h): (usize, usize) = (w.parse()?, h.parse()?);
    let repeat: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let a = Frame::from_rgb(w, h, std::fs::read(&args[0])?)?;
    let b = Frame::from_rgb(w, h, std::fs::read(&args[1])?)?;
    let model = Model::embedded()?;
    let interp = model.interpolator().expect("the embedded default is the interpolator");
    interp.interpolate(&a, &b, 0.5)?; // warm-up
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t0 = Instant::now();
        std::hint::black_box(interp.interpolate(&a, &b, 0.5)?);
        times.push(t0.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{{\"seconds_per_frame\": {mean:.4}, \"min_seconds\": {min:.4}, \"peak_rss_mib\": {:.1}, \"threads\": {}}}",
        weft::eval::peak_memory_mib(),
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
