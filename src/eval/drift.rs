//! Drift of a long generation against the real footage it continues: per
//! second of generated video, the mean colour, sharpness and saturation next to
//! the last second of real frames. Users of diffusion video models report
//! that extending from the last frame alone drifts in colour and
//! over-saturates; this is the measurement that shows whether a job does.
//!
//! - **colour shift**: the largest difference of a channel mean (8-bit levels)
//!   between the generated second and the reference second;
//! - **sharpness**: mean absolute 4-neighbour Laplacian of the luma (levels),
//!   as a ratio to the reference (below 1: softer, above 1: noisier);
//! - **saturation**: mean per-pixel `max(R,G,B) - min(R,G,B)` (levels), as a
//!   ratio to the reference (above 1: over-saturated).

use std::fmt::Write;

use serde::Serialize;

use crate::error::{Result, WeftError};
use crate::frame::Frame;

/// The statistics of one run of frames.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Stats {
    pub mean_rgb: [f64; 3],
    pub sharpness: f64,
    pub saturation: f64,
}

/// One second of generated video against the reference.
#[derive(Clone, Debug, Serialize)]
pub struct DriftSecond {
    /// Seconds after the last real frame (0 = the first generated second).
    pub second: usize,
    pub frames: usize,
    pub stats: Stats,
    pub colour_shift: f64,
    pub sharpness_ratio: f64,
    pub saturation_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DriftReport {
    /// The last second of real frames (or all of them when fewer).
    pub reference: Stats,
    pub reference_frames: usize,
    pub seconds: Vec<DriftSecond>,
}

/// Statistics of `frames` (all the same size, at least one).
pub fn stats(frames: &[Frame]) -> Stats {
    let (mut rgb, mut sharp, mut sat) = ([0f64; 3], 0f64, 0f64);
    for f in frames {
        let (w, h, d) = (f.width(), f.height(), f.data());
        let mut sum = [0u64; 3];
        let mut chroma = 0u64;
        for p in d.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += p[c] as u64;
            }
            chroma += (p.iter().max().unwrap() - p.iter().min().unwrap()) as u64;
        }
        let n = (w * h) as f64;
        for c in 0..3 {
            rgb[c] += sum[c] as f64 / n;
        }
        sat += chroma as f64 / n;
        let luma: Vec<f64> =
            d.chunks_exact(3).map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64).collect();
        let (mut lap, mut count) = (0f64, 0usize);
        for y in 1..h.saturating_sub(1) {
            for x in 1..w - 1 {
                let i = y * w + x;
                lap += (4.0 * luma[i] - luma[i - 1] - luma[i + 1] - luma[i - w] - luma[i + w]).abs();
                count += 1;
            }
        }
        sharp += if count > 0 { lap / count as f64 } else { 0.0 };
    }
    let n = frames.len().max(1) as f64;
    Stats { mean_rgb: rgb.map(|v| v / n), sharpness: sharp / n, saturation: sat / n }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// The drift of `frames[known..]` (generated) against the last second of
/// `frames[..known]` (real), in whole seconds of `fps` frames (the last one may
/// be shorter).
pub fn drift(frames: &[Frame], known: usize, fps: f64) -> Result<DriftReport> {
    if !(fps.is_finite() && fps > 0.0) {
        return Err(WeftError::BadOptions(format!("drift: frame rate {fps} is not positive")));
    }
    if known == 0 || known >= frames.len() {
        return Err(WeftError::BadOptions(format!(
            "drift: {known} real frames of {} leave no real or no generated frames",
            frames.len()
        )));
    }
    if let Some(f) = frames.iter().find(|f| (f.width(), f.height()) != (frames[0].width(), frames[0].height())) {
        return Err(WeftError::BadFrame(format!(
            "drift: a {}x{} frame among {}x{} ones",
            f.width(),
            f.height(),
            frames[0].width(),
            frames[0].height()
        )));
    }
    let per = (fps.round() as usize).max(1);
    let refs = &frames[known.saturating_sub(per)..known];
    let reference = stats(refs);
    let seconds = frames[known..]
        .chunks(per)
        .enumerate()
        .map(|(second, run)| {
            let s = stats(run);
            let colour_shift = (0..3).map(|c| (s.mean_rgb[c] - reference.mean_rgb[c]).abs()).fold(0.0, f64::max);
            DriftSecond {
                second,
                frames: run.len(),
                stats: s,
                colour_shift,
                sharpness_ratio: ratio(s.sharpness, reference.sharpness),
                saturation_ratio: ratio(s.saturation, reference.saturation),
            }
        })
        .collect();
    Ok(DriftReport { reference, reference_frames: refs.len(), seconds })
}

/// The report as a table, one row per second (shift: the colour shift).
pub fn table(r: &DriftReport) -> String {
    let mut s = String::new();
    let row = |s: &mut String, label: &str, frames: usize, st: &Stats, shift: &str, sharp: &str, sat: &str| {
        writeln!(
            s,
            "{label:>9} | {frames:>6} | {:>6.1} {:>6.1} {:>6.1} | {shift:>7} | {:>6.2} {sharp:>6} | {:>6.2} {sat:>6}",
            st.mean_rgb[0], st.mean_rgb[1], st.mean_rgb[2], st.sharpness, st.saturation
        )
        .unwrap()
    };
    writeln!(s, "   second | frames | mean R mean G mean B |   shift | sharp (ratio) | satur.  ratio").unwrap();
    row(&mut s, "real", r.reference_frames, &r.reference, "-", "-", "-");
    for d in &r.seconds {
        row(
            &mut s,
            &format!("+{}", d.second + 1),
            d.frames,
            &d.stats,
            &format!("{:.1}", d.colour_shift),
            &format!("{:.2}", d.sharpness_ratio),
            &format!("{:.2}", d.saturation_ratio),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32x24 frame: a horizontal ramp plus a checker of `amp` levels,
    /// shifted by `tint` per channel.
    fn frame(amp: i32, tint: [i32; 3]) -> Frame {
        let (w, h) = (32, 24);
        let mut d = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let base = 60 + 4 * x as i32 + if (x + y) % 2 == 0 { amp } else { -amp };
                for t in tint {
                    d.push((base + t).clamp(0, 255) as u8);
                }
            }
        }
        Frame::from_rgb(w, h, d).unwrap()
    }

    #[test]
    fn frames_like_the_reference_do_not_drift() {
        let frames = vec![frame(10, [0, 5, 10]); 75];
        let r = drift(&frames, 25, 25.0).unwrap();
        assert_eq!(r.reference_frames, 25);
        assert_eq!(r.seconds.len(), 2);
        for s in &r.seconds {
            assert_eq!(s.colour_shift, 0.0);
            assert_eq!(s.sharpness_ratio, 1.0);
            assert_eq!(s.saturation_ratio, 1.0);
        }
    }

    #[test]
    fn a_tint_a_blur_and_saturation_are_reported_per_second() {
        let mut frames = vec![frame(10, [0, 5, 10]); 25];
        frames.extend(vec![frame(10, [0, 5, 10]); 25]); // +1: as the reference
        frames.extend(vec![frame(10, [0, 5, 30]); 25]); // +2: blue up 20
        // +3, a short last second: 10 softer frames, then 5 more saturated ones.
        frames.extend(vec![frame(2, [0, 5, 10]); 10]);
        frames.extend(vec![frame(10, [-20, 5, 40]); 5]);
        let r = drift(&frames, 25, 25.0).unwrap();
        let s = &r.seconds;
        assert_eq!(s.iter().map(|d| d.frames).collect::<Vec<_>>(), vec![25, 25, 15]);
        assert_eq!(s[0].colour_shift, 0.0);
        assert!((s[1].colour_shift - 20.0).abs() < 1e-9, "{}", s[1].colour_shift);
        assert!(s[2].sharpness_ratio < 0.9, "{}", s[2].sharpness_ratio);
        assert!(s[2].saturation_ratio > 1.0, "{}", s[2].saturation_ratio);
        let t = table(&r);
        assert_eq!(t.lines().count(), 5, "{t}");
    }

    #[test]
    fn impossible_splits_are_refused() {
        let frames = vec![frame(10, [0, 0, 0]); 10];
        assert!(drift(&frames, 0, 25.0).is_err());
        assert!(drift(&frames, 10, 25.0).is_err());
        assert!(drift(&frames, 5, 0.0).is_err());
        let mut odd = frames.clone();
        odd.push(Frame::filled(8, 8, [0, 0, 0]).unwrap());
        assert!(drift(&odd, 5, 25.0).unwrap_err().to_string().contains("8x8"));
    }
}
