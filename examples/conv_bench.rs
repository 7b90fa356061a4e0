//! Benchmark of IFNet's convolutions: candle's CPU conv vs `model::rife::conv`.
//!
//! `cargo run --release --example conv_bench [-- WIDTH HEIGHT ...]` (default: 640x480
//! and 1280x720, padded to multiples of 64). Prints per-op milliseconds (best of
//! several runs) and the totals of one IFNet pass (encoder on both frames, 5 blocks).
//! `scripts/conv_torch_bench.py` prints the same table for PyTorch.

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use weft::model::rife::conv::Conv;

#[derive(Clone, Copy)]
enum Op {
    /// 3x3 conv (stride, leaky slope).
    Conv(usize, Option<f32>),
    /// ResConv block.
    Res,
    /// ConvTranspose2d 4x4 stride 2 (+ PixelShuffle(2) when true).
    Up(bool),
}

struct Case {
    name: String,
    op: Op,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    count: usize,
}

fn ifnet_cases(h: usize, w: usize) -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name: String, op, cin, cout, h, w, count| v.push(Case { name, op, cin, cout, h, w, count });
    add("enc.s2 3->16".into(), Op::Conv(2, Some(0.2)), 3, 16, h, w, 2);
    // cnn1 and cnn2, on both frames.
    add("enc.s1 16->16".into(), Op::Conv(1, Some(0.2)), 16, 16, h / 2, w / 2, 4);
    add("enc.up 16->4".into(), Op::Up(false), 16, 4, h / 2, w / 2, 2);
    let blocks = [(16usize, 192usize, 15usize), (8, 128, 28), (4, 96, 28), (2, 64, 28), (1, 32, 28)];
    for (i, &(s, c, cin)) in blocks.iter().enumerate() {
        let (bh, bw) = (h / s, w / s);
        add(format!("b{i}.s2 {cin}->{}", c / 2), Op::Conv(2, Some(0.2)), cin, c / 2, bh, bw, 1);
        add(format!("b{i}.s2 {}->{c}", c / 2), Op::Conv(2, Some(0.2)), c / 2, c, bh / 2, bw / 2, 1);
        add(format!("b{i}.res {c}"), Op::Res, c, c, bh / 4, bw / 4, 8);
        add(format!("b{i}.up {c}->52+ps"), Op::Up(true), c, 52, bh / 4, bw / 4, 1);
    }
    v
}

fn flops(c: &Case) -> f64 {
    let (ci, co, h, w) = (c.cin as f64, c.cout as f64, c.h as f64, c.w as f64);
    match c.op {
        Op::Conv(s, _) => 2.0 * ci * co * 9.0 * (h / s as f64).ceil() * (w / s as f64).ceil(),
        Op::Res => 2.0 * ci * co * 9.0 * h * w,
        Op::Up(_) => 2.0 * ci * co * 16.0 * h * w,
    }
}

fn time_ms(mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut n = 0;
    while n < 3 || (start.elapsed().as_secs_f64() < 0.5 && n < 200) {
        let t = Instant::now();
        let y = f()?;
        drop(y);
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        n += 1;
    }
    Ok(best)
}

fn leaky(y: &Tensor, s: f32) -> Result<Tensor> {
    y.maximum(&(y * s as f64)?)
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes: Vec<(usize, usize)> = if args.len() >= 2 {
        args.chunks(2).map(|c| (c[0], c[1])).collect()
    } else {
        vec![(640, 480), (1280, 720)]
    };
    let dev = Device::Cpu;
    println!("rayon threads: {}", rayon::current_num_threads());
    for (fw, fh) in sizes {
        let (w, h) = (fw.div_ceil(64) * 64, fh.div_ceil(64) * 64);
        println!("\n== {fw}x{fh} -> {w}x{h} ==");
        println!("{:<18} {:>4} {:>12} {:>9} {:>10} {:>10} {:>8} {:>7}", "op", "n", "in CxHxW", "GFLOP", "candle ms", "ours ms", "GFLOP/s", "speedup");
        let (mut tc, mut to) = (0.0, 0.0);
        let filter = std::env::var("FILTER").unwrap_or_default();
        for c in ifnet_cases(h, w).into_iter().filter(|c| c.name.contains(filter.as_str())) {
            let x = Tensor::randn(0f32, 1.0, (1, c.cin, c.h, c.w), &dev)?;
            let b = Tensor::randn(0f32, 0.1, c.cout, &dev)?;
            let b4 = b.reshape((1, c.cout, 1, 1))?;
            let (ms_c, ms_o) = match c.op {
                Op::Conv(s, act) => {
                    let wt = Tensor::randn(0f32, 0.05, (c.cout, c.cin, 3, 3), &dev)?;
                    let conv = Conv::conv2d(&wt, &b, s, 1)?;
                    let mc = time_ms(|| {
                        let y = x.conv2d(&wt, 1, s, 1, 1)?.broadcast_add(&b4)?;
                        match act { Some(a) => leaky(&y, a), None => Ok(y) }
                    })?;
                    (mc, time_ms(|| conv.forward(&x, act))?)
                }
                Op::Res => {
                    let wt = Tensor::randn(0f32, 0.05, (c.cout, c.cin, 3, 3), &dev)?;
                    let beta = Tensor::ones((1, c.cout, 1, 1), candle_core::DType::F32, &dev)?;
                    let conv = Conv::conv2d(&wt, &b, 1, 1)?;
                    let mc = time_ms(|| {
                        let y = x.conv2d(&wt, 1, 1, 1, 1)?.broadcast_add(&b4)?.broadcast_mul(&beta)?.add(&x)?;
                        leaky(&y, 0.2)
                    })?;
                    (mc, time_ms(|| conv.forward_residual(&x, &beta, 0.2))?)
                }
                Op::Up(ps) => {
                    let wt = Tensor::randn(0f32, 0.05, (c.cin, c.cout, 4, 4), &dev)?;
                    let conv = Conv::conv_transpose2d(&wt, &b, 2, 1)?;
                    let mc = time_ms(|| {
                        let y = x.conv_transpose2d(&wt, 1, 0, 2, 1)?.broadcast_add(&b4)?;
                        if ps {
                            let (n, ch, hh, ww) = y.dims4()?;
                            y.reshape((n, ch / 4, 2, 2, hh, ww))?.permute((0, 1, 4, 2, 5, 3))?.reshape((n, ch / 4, hh * 2, ww * 2))
                        } else {
                            Ok(y)
                        }
                    })?;
                    let mo = time_ms(|| if ps { conv.forward_shuffled(&x) } else { conv.forward(&x, None) })?;
                    (mc, mo)
                }
            };
            let gf = flops(&c) / 1e9;
            tc += ms_c * c.count as f64;
            to += ms_o * c.count as f64;
            println!(
                "{:<18} {:>4} {:>12} {:>9.4} {:>10.3} {:>10.3} {:>8.1} {:>6.2}x",
                c.name, c.count, format!("{}x{}x{}", c.cin, c.h, c.w), gf, ms_c, ms_o, gf / ms_o * 1e3, ms_c / ms_o
            );
        }
        println!("{:<18} {:>4} {:>12} {:>9} {:>10.2} {:>10.2} {:>8} {:>6.2}x", "TOTAL (x n)", "", "", "", tc, to, "", tc / to);
    }
    Ok(())
}
