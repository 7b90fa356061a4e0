//! Measuring the model against simple baselines on real footage.
//!
//! For each clip: frames are cut out (gaps of 1, 3 and 7 by default at
//! several positions) and filled by **weft**, **hold** (repeat the last frame
//! before the gap) and **blend** (linear cross-fade across the gap); the
//! filled frames are scored against the truth (PSNR, SSIM). The **motion**
//! column is the motion-compensated interpolation alone (the estimate a
//! `motion`-prior model starts from), so the table shows what the model adds.
//! Extension continues `2 * context` known frames (at least 3) at the same
//! positions and scores frames +1..+k against the truth for weft and hold
//! (mean of per-position dB). Animate reports the
//! first frame's PSNR against the still, the mean frame-to-frame change (it
//! must move, and must not blow up) and the colour drift of the last frame.
//! Positions whose span crosses a scene cut are skipped (no method can fill
//! across a cut, and the pipeline holds there instead).

pub mod drift;

use std::time::Instant;

use serde::Serialize;

use crate::analysis::scene_score;
use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::Model;
use crate::tasks::{self, Direction, GenerateOptions};

/// What to measure.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub gaps: Vec<usize>,
    /// Positions per gap size, spread evenly over the clip.
    pub positions: usize,
    /// Known frames given on each side of a gap.
    pub context: usize,
    /// Frames generated when extending (scored +1..+n).
    pub extend_frames: usize,
    /// Frames of the animate clip.
    pub animate_frames: usize,
    /// Scene-score threshold above which a span is considered to hold a cut.
    pub scene_threshold: f64,
    pub generate: GenerateOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            gaps: vec![1, 3, 7],
            positions: 3,
            context: 2,
            extend_frames: 4,
            animate_frames: 8,
            scene_threshold: 0.35,
            generate: GenerateOptions::default(),
        }
    }
}

/// Scores of one method on the filled frames of one gap size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scores {
    pub psnr: f64,
    pub ssim: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GapResult {
    pub gap: usize,
    /// Positions actually measured (some may be skipped at cuts).
    pub positions: usize,
    pub weft: Scores,
    pub hold: Scores,
    pub blend: Scores,
    /// Motion-compensated interpolation alone (the `motion` prior's estimate,
    /// before the model), to show what the model adds.
    pub motion: Scores,
    /// The learned flow interpolator alone at every frame's own t, for a
    /// model that has one (else `None`).
    pub flow: Option<Scores>,
    /// Known frames given on each side (more for an interpolator model, whose
    /// estimator choice tests itself on them; see `tasks::context_for_gap`).
    pub context: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtendResult {
    /// Positions measured (some may be skipped at cuts).
    pub positions: usize,
    /// PSNR of frames +1..+n, weft.
    pub weft_psnr: Vec<f64>,
    /// PSNR of frames +1..+n, holding the last frame.
    pub hold_psnr: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AnimateResult {
    /// PSNR of the clip's first frame against the still (infinite when identical).
    pub frame0_psnr: f64,
    /// Mean absolute change between consecutive frames, in 8-bit levels.
    pub motion: f64,
    /// Largest difference of a channel mean between the last frame and the still.
    pub colour_drift: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClipReport {
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    pub infill: Vec<GapResult>,
    pub extend: Option<ExtendResult>,
    pub animate: AnimateResult,
    pub seconds_per_generated_frame: f64,
    /// Peak resident memory of this process so far, in MiB (Linux; 0 elsewhere).
    pub peak_memory_mib: f64,
}

/// Mean squared error over all bytes of several frame pairs.
fn mse(pairs: &[(&Frame, &Frame)]) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for (a, b) in pairs {
        for (x, y) in a.data().iter().zip(b.data()) {
            let d = *x as f64 - *y as f64;
            s += d * d;
        }
        n += a.data().len();
    }
    s / n.max(1) as f64
}

/// PSNR in dB (8-bit peak) of `a` against `b`, over all pairs.
pub fn psnr(pairs: &[(&Frame, &Frame)]) -> f64 {
    let m = mse(pairs);
    if m == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / m).log10() }
}

fn luma(f: &Frame) -> Vec<f64> {
    f.data().chunks_exact(3).map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64).collect()
}

/// SSIM of the luma planes, mean over 8x8 windows with stride 4 (whole frame
/// as one window when smaller).
pub fn ssim(a: &Frame, b: &Frame) -> f64 {
    let (w, h) = (a.width(), a.height());
    let (la, lb) = (luma(a), luma(b));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let win = 8.min(w).min(h);
    let (mut total, mut count) = (0.0, 0usize);
    let mut y = 0;
    while y + win <= h {
        let mut x = 0;
        while x + win <= w {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for yy in y..y + win {
                for xx in x..x + win {
                    let (p, q) = (la[yy * w + xx], lb[yy * w + xx]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let n = (win * win) as f64;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
            x += 4;
        }
        y += 4;
    }
    total / count.max(1) as f64
}

fn scores(filled: &[Frame], truth: &[Frame]) -> Scores {
    let pairs: Vec<_> = filled.iter().zip(truth).collect();
    let ssim = pairs.iter().map(|(a, b)| ssim(a, b)).sum::<f64>() / pairs.len().max(1) as f64;
    Scores { psnr: psnr(&pairs), ssim }
}

/// Linear cross-fade between `a` and `b`, `n` in-between frames.
pub fn blend(a: &Frame, b: &Frame, n: usize) -> Vec<Frame> {
    (1..=n)
        .map(|i| {
            let s = i as f64 / (n + 1) as f64;
            let d = a.data().iter().zip(b.data()).map(|(x, y)| (*x as f64 * (1.0 - s) + *y as f64 * s).round() as u8).collect();
            Frame::from_rgb(a.width(), a.height(), d).expect("same size")
        })
        .collect()
}

/// Motion-compensated interpolation between `a` and `b`, `n` in-between frames.
pub fn motion(a: &Frame, b: &Frame, n: usize) -> Vec<Frame> {
    let pair = crate::tasks::motion::MotionPair::estimate(a, b);
    (1..=n).map(|i| pair.interpolate(a, b, i as f32 / (n + 1) as f32)).collect()
}

fn averaged(list: &[Scores]) -> Scores {
    // PSNR averaged in the MSE domain would hide bad positions less; report the
    // mean of per-position dB (finite by construction except exact copies).
    let n = list.len().max(1) as f64;
    Scores {
        psnr: list.iter().map(|s| s.psnr.min(100.0)).sum::<f64>() / n,
        ssim: list.iter().map(|s| s.ssim).sum::<f64>() / n,
    }
}

/// Peak resident memory of this process in MiB (Linux), else 0.
pub fn peak_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn has_cut(frames: &[Frame], threshold: f64) -> bool {
    frames.windows(2).any(|w| scene_score(&w[0], &w[1]) > threshold)
}

/// Runs the whole protocol on one decoded clip.
pub fn evaluate_clip(model: &Model, name: &str, frames: &[Frame], opts: &EvalOptions) -> Result<ClipReport> {
    let ctx = opts.context.max(1);
    let max_gap = opts.gaps.iter().copied().max().unwrap_or(1);
    if frames.len() < 2 * ctx + max_gap {
        return Err(WeftError::BadOptions(format!(
            "{name}: {} frames is too short for gaps of {max_gap} with {ctx} context frames each side",
            frames.len()
        )));
    }
    let interp = model.interpolator();
    let mut generated = 0usize;
    let mut gen_secs = 0.0f64;
    let mut infill = Vec::new();
    for &gap in &opts.gaps {
        // As much context as the model asks for, as far as the clip allows.
        let ctx = tasks::context_for_gap(model, gap, ctx).min((frames.len() - gap) / 2);
        let span = 2 * ctx + gap;
        let room = frames.len() - span;
        let (mut w, mut h, mut b, mut m, mut fl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..opts.positions.max(1) {
            let start = room * (2 * k + 1) / (2 * opts.positions.max(1));
            let window = &frames[start..start + span];
            if has_cut(window, opts.scene_threshold) {
                continue;
            }
            let (before, rest) = window.split_at(ctx);
            let (truth, after) = rest.split_at(gap);
            let mut g = opts.generate.clone();
            g.seed = g.seed.wrapping_add(k as u64);
            let t0 = Instant::now();
            let filled = tasks::infill(model, before, after, gap, &g)?;
            gen_secs += t0.elapsed().as_secs_f64();
            generated += gap;
            w.push(scores(&filled, truth));
            let last = &before[ctx - 1];
            h.push(scores(&vec![last.clone(); gap], truth));
            b.push(scores(&blend(last, &after[0], gap), truth));
            m.push(scores(&motion(last, &after[0], gap), truth));
            if let Some(i) = interp {
                let pair = i.pair(last, &after[0])?;
                let filled = (1..=gap).map(|k| pair.at(k as f32 / (gap + 1) as f32)).collect::<Result<Vec<_>>>()?;
                fl.push(scores(&filled, truth));
            }
        }
        infill.push(GapResult {
            gap,
            positions: w.len(),
            weft: averaged(&w),
            hold: averaged(&h),
            blend: averaged(&b),
            motion: averaged(&m),
            flow: interp.map(|_| averaged(&fl)),
            context: ctx,
        });
    }

    // Extension at `positions` places spread over the clip, from enough known
    // frames that a motion prior can check its motion (see `tasks::prior`).
    let n = opts.extend_frames;
    let ext_ctx = (2 * ctx).max(3);
    let extend = if n > 0 && frames.len() >= ext_ctx + n {
        let room = frames.len() - ext_ctx - n;
        let (mut wsum, mut hsum, mut count) = (vec![0.0; n], vec![0.0; n], 0usize);
        for k in 0..opts.positions.max(1) {
            let start = room * (2 * k + 1) / (2 * opts.positions.max(1));
            if has_cut(&frames[start..start + ext_ctx + n], opts.scene_threshold) {
                continue;
            }
            let known = &frames[start..start + ext_ctx];
            let truth = &frames[start + ext_ctx..start + ext_ctx + n];
            let mut g = opts.generate.clone();
            g.seed = g.seed.wrapping_add(k as u64);
            let t0 = Instant::now();
            let out = tasks::extend(model, known, n, Direction::Forward, &g)?;
            gen_secs += t0.elapsed().as_secs_f64();
            generated += n;
            let last = &known[ext_ctx - 1];
            for (i, (a, b)) in out.iter().zip(truth).enumerate() {
                wsum[i] += psnr(&[(a, b)]).min(100.0);
                hsum[i] += psnr(&[(last, b)]).min(100.0);
            }
            count += 1;
        }
        (count > 0).then(|| ExtendResult {
            positions: count,
            weft_psnr: wsum.iter().map(|v| v / count as f64).collect(),
            hold_psnr: hsum.iter().map(|v| v / count as f64).collect(),
        })
    } else {
        None
    };

    // Animate the middle frame.
    let still = &frames[frames.len() / 2];
    let t0 = Instant::now();
    let clip = tasks::animate(model, still, opts.animate_frames.max(2), &opts.generate)?;
    gen_secs += t0.elapsed().as_secs_f64();
    generated += clip.len() - 1;
    let motion = clip.windows(2).map(|w| crate::analysis::mean_abs_diff(&w[0], &w[1])).sum::<f64>() / (clip.len() - 1) as f64;
    let means = |f: &Frame| {
        let mut m = [0f64; 3];
        for p in f.data().chunks_exact(3) {
            for c in 0..3 {
                m[c] += p[c] as f64;
            }
        }
        let n = (f.width() * f.height()) as f64;
        m.map(|v| v / n)
    };
    let (ms, ml) = (means(still), means(clip.last().expect("non-empty")));
    let colour_drift = (0..3).map(|c| (ms[c] - ml[c]).abs()).fold(0.0, f64::max);

    Ok(ClipReport {
        name: name.to_string(),
        width: frames[0].width(),
        height: frames[0].height(),
        frames: frames.len(),
        infill,
        extend,
        animate: AnimateResult { frame0_psnr: psnr(&[(&clip[0], still)]), motion, colour_drift },
        seconds_per_generated_frame: gen_secs / generated.max(1) as f64,
        peak_memory_mib: peak_memory_mib(),
    })
}

/// The reports as a plain-text table.
pub fn table(reports: &[ClipReport]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let fmt = |v: f64| if v.is_infinite() { "inf".to_string() } else { format!("{v:.2}") };
    writeln!(
        s,
        "{:<24} {:>4} {:>4} | {:>12} {:>12} {:>12} {:>12} {:>12} | {:>7} {:>7} {:>7}",
        "clip", "gap", "n", "weft dB/SSIM", "flow", "blend", "hold", "motion", "w-blend", "w-motion", "w-flow"
    )
    .unwrap();
    for r in reports {
        for g in &r.infill {
            let (fp, fs) = g.flow.as_ref().map_or((f64::NAN, f64::NAN), |f| (f.psnr, f.ssim));
            writeln!(
                s,
                "{:<24} {:>4} {:>4} | {:>6} {:>5.3} {:>6} {:>5.3} {:>6} {:>5.3} {:>6} {:>5.3} {:>6} {:>5.3} | {:>+7.2} {:>+7.2} {:>+7.2}",
                r.name,
                g.gap,
                g.positions,
                fmt(g.weft.psnr),
                g.weft.ssim,
                fmt(fp),
                fs,
                fmt(g.blend.psnr),
                g.blend.ssim,
                fmt(g.hold.psnr),
                g.hold.ssim,
                fmt(g.motion.psnr),
                g.motion.ssim,
                g.weft.psnr - g.blend.psnr,
                g.weft.psnr - g.motion.psnr,
                g.weft.psnr - fp
            )
            .unwrap();
        }
    }
    writeln!(s).unwrap();
    writeln!(s, "{:<24} | extension PSNR +1..+n: weft / hold (positions)", "clip").unwrap();
    for r in reports {
        match &r.extend {
            Some(e) => {
                let row = |v: &[f64]| v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(" ");
                writeln!(s, "{:<24} | {} / {} ({})", r.name, row(&e.weft_psnr), row(&e.hold_psnr), e.positions).unwrap();
            }
            None => writeln!(s, "{:<24} | skipped (clip too short or a cut)", r.name).unwrap(),
        }
    }
    writeln!(s).unwrap();
    writeln!(s, "{:<24} | animate: frame-0 dB, motion, colour drift | s/frame | peak MiB", "clip").unwrap();
    for r in reports {
        writeln!(
            s,
            "{:<24} | {:>6} {:>7.2} {:>7.2} | {:>7.3} | {:>8.0}",
            r.name,
            fmt(r.animate.frame0_psnr),
            r.animate.motion,
            r.animate.colour_drift,
            r.seconds_per_generated_frame,
            r.peak_memory_mib
        )
        .unwrap();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(v: u8) -> Frame {
        Frame::filled(16, 16, [v, v, v]).unwrap()
    }

    #[test]
    fn psnr_and_ssim_of_known_cases() {
        let (a, b) = (gray(100), gray(110));
        assert!(psnr(&[(&a, &a)]).is_infinite());
        // MSE 100 -> 10 log10(65025 / 100) = 28.13 dB.
        assert!((psnr(&[(&a, &b)]) - 28.1308).abs() < 1e-3);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
        assert!(ssim(&a, &b) < 1.0);
    }

    #[test]
    fn blend_is_a_linear_cross_fade() {
        let out = blend(&gray(0), &gray(200), 3);
        let v: Vec<u8> = out.iter().map(|f| f.data()[0]).collect();
        assert_eq!(v, vec![50, 100, 150]);
    }
}
