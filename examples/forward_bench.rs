//! Times one forward pass of the default architecture (untrained weights) on
//! a window of frames, and a full sampling of one generated frame.
//!
//! cargo run --release --example forward_bench -- [FRAMES] [WIDTH] [HEIGHT] [STEPS]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use weft::model::{Mode, WindowBatch};
use weft::model::Transformer;
use weft::{Config, Frame, GenerateOptions, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let t = *args.first().unwrap_or(&5);
    let w = *args.get(1).unwrap_or(&256);
    let h = *args.get(2).unwrap_or(&256);
    let steps = *args.get(3).unwrap_or(&12);
    let dev = Device::Cpu;
    // Marked trained so that the sampler runs (what a trained model costs).
    let model = Transformer::untrained(&Config { trained: true, ..Config::default() }, 0, &dev)?;
    println!("model: {} parameters, {} threads", model.num_parameters(), candle_core::utils::get_num_threads());

    let x = Tensor::randn(0f32, 1.0, (1, t, 3, h, w), &dev)?;
    let tt = Tensor::ones((1, t), DType::F32, &dev)?;
    let known = Tensor::zeros((1, t), DType::U32, &dev)?;
    let tpos = Tensor::arange(0f32, t as f32, &dev)?.reshape((1, t))?;
    let batch = WindowBatch { x: &x, t: &tt, known: &known, tpos: &tpos };
    model.forward(&batch, Mode::Inference)?; // warm-up
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        model.forward(&batch, Mode::Inference)?;
    }
    let fwd = start.elapsed().as_secs_f64() / runs as f64;
    println!("forward {t} frames {w}x{h}: {fwd:.3} s");

    // One infill window: 2 known + 1 generated + 2 known.
    let frames: Vec<Frame> = (0..4).map(|k| Frame::filled(w, h, [k * 40, 90, 200]).unwrap()).collect();
    let opts = GenerateOptions { steps, ..Default::default() };
    let model: Model = model.into();
    let start = Instant::now();
    weft::infill(&model, &frames[..2], &frames[2..], 1, &opts)?;
    println!("infill 1 frame {w}x{h} with 4 context frames, {steps} steps: {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}
