//! Helper of `plugin/bench/passthrough.sh`.
//!
//! * `weft_bench init DIR tiny|default` writes an untrained model of that
//!   config to DIR (unless one is there);
//! * `weft_bench library DIR WIDTH HEIGHT STEPS GAP` times `weft::infill`
//!   of a GAP-frame hole with two known frames on each side (what weftinfill
//!   runs for a gap) and prints `seconds-per-frame X`.

use std::time::Instant;

fn frame(w: usize, h: usize, k: usize) -> weft::Frame {
    let data = (0..w * h * 3).map(|i| ((i / 3 % w + i / 3 / w + 4 * k) % 256) as u8).collect();
    weft::Frame::from_rgb(w, h, data).expect("frame")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("init") if args.len() == 3 => {
            let dir = std::path::Path::new(&args[1]);
            if dir.join("model.safetensors").exists() {
                return Ok(());
            }
            let cfg = match args[2].as_str() {
                "tiny" => weft::Config::tiny(),
                "default" => weft::Config::default(),
                other => return Err(format!("unknown config {other}").into()),
            };
            weft::Model::untrained(&cfg, 1, &candle_core::Device::Cpu)?.save(dir)?;
        }
        Some("library") if args.len() == 6 => {
            let model = weft::Model::load(&args[1])?;
            let (w, h): (usize, usize) = (args[2].parse()?, args[3].parse()?);
            let steps: usize = args[4].parse()?;
            let gap: usize = args[5].parse()?;
            let before = [frame(w, h, 0), frame(w, h, 1)];
            let after = [frame(w, h, gap + 2), frame(w, h, gap + 3)];
            let opts =
                weft::GenerateOptions { steps, seed: 0, device: None, window: None, context: 2, ..Default::default() };
            let t0 = Instant::now();
            let out = weft::infill(&model, &before, &after, gap, &opts)?;
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(out.len(), gap);
            println!("seconds-per-frame {:.4}", secs / gap as f64);
        }
        _ => {
            eprintln!("usage: weft_bench init DIR tiny|default | weft_bench library DIR WIDTH HEIGHT STEPS GAP");
            std::process::exit(2);
        }
    }
    Ok(())
}
