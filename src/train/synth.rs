//! Training clips: windows cut from real video, and clips made from real
//! stills by synthetic camera motion (pan, zoom, rotation) with a cut-out
//! moving over the background — unlimited real texture with known motion.

use rand::Rng;

use crate::frame::Frame;

/// Bilinear sample of `f` at (x, y) (edge-clamped), as floats 0..255.
fn sample(f: &Frame, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (f.width() as f32, f.height() as f32);
    let x = x.clamp(0.0, w - 1.0);
    let y = y.clamp(0.0, h - 1.0);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(f.width() - 1), (y0 + 1).min(f.height() - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let d = f.data();
    let px = |xx: usize, yy: usize, c: usize| d[(yy * f.width() + xx) * 3 + c] as f32;
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
        let bot = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
        *o = top * (1.0 - fy) + bot * fy;
    }
    out
}

/// An affine view of a still: centre, scale (source pixels per output pixel), rotation.
#[derive(Clone, Copy, Debug)]
struct View {
    cx: f32,
    cy: f32,
    scale: f32,
    angle: f32,
}

impl View {
    fn lerp(a: View, b: View, s: f32) -> View {
        View {
            cx: a.cx + (b.cx - a.cx) * s,
            cy: a.cy + (b.cy - a.cy) * s,
            scale: a.scale * (b.scale / a.scale).powf(s),
            angle: a.angle + (b.angle - a.angle) * s,
        }
    }
    /// Source coordinates of output pixel (x, y) in a `w x h` frame.
    fn map(&self, x: f32, y: f32, w: usize, h: usize) -> (f32, f32) {
        let (dx, dy) = ((x - w as f32 / 2.0) * self.scale, (y - h as f32 / 2.0) * self.scale);
        let (s, c) = self.angle.sin_cos();
        (self.cx + c * dx - s * dy, self.cy + s * dx + c * dy)
    }
}

/// A `frames`-frame `w x h` clip of `still` under a random smooth camera
/// motion, with (usually) a cut-out of `overlay` sliding across it.
pub fn camera_clip(still: &Frame, overlay: Option<&Frame>, frames: usize, w: usize, h: usize, rng: &mut impl Rng) -> Vec<Frame> {
    let (sw, sh) = (still.width() as f32, still.height() as f32);
    // Scale so the view fits the still; sometimes zoomed in for detail.
    let fit = (sw / w as f32).min(sh / h as f32).max(0.05);
    let base_scale = fit * rng.random_range(0.25f32..0.9).min(1.0);
    let max_shift = 0.12 * w.max(h) as f32 * base_scale; // pixels of source per frame
    let start = View {
        cx: rng.random_range(sw * 0.3..sw * 0.7),
        cy: rng.random_range(sh * 0.3..sh * 0.7),
        scale: base_scale,
        angle: 0.0,
    };
    let span = frames.max(2) as f32 - 1.0;
    let end = View {
        cx: start.cx + rng.random_range(-max_shift..max_shift) * span,
        cy: start.cy + rng.random_range(-max_shift..max_shift) * span,
        scale: base_scale * rng.random_range(0.85f32..1.18),
        angle: if rng.random_bool(0.3) { rng.random_range(-0.04f32..0.04) * span } else { 0.0 },
    };
    // Cut-out: an ellipse of the overlay, moving on its own path.
    let cut = overlay.filter(|_| rng.random_bool(0.7)).map(|o| {
        let rw = rng.random_range(0.15f32..0.4) * w as f32;
        let rh = rng.random_range(0.15f32..0.4) * h as f32;
        let p0 = (rng.random_range(0.0..w as f32), rng.random_range(0.0..h as f32));
        let v = (rng.random_range(-0.1f32..0.1) * w as f32, rng.random_range(-0.1f32..0.1) * h as f32);
        let src = (rng.random_range(0.0..o.width() as f32), rng.random_range(0.0..o.height() as f32));
        (o, rw, rh, p0, v, src)
    });
    (0..frames)
        .map(|k| {
            let s = k as f32 / span;
            let view = View::lerp(start, end, s);
            let mut data = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let (sx, sy) = view.map(x as f32 + 0.5, y as f32 + 0.5, w, h);
                    let mut px = sample(still, sx, sy);
                    if let Some((o, rw, rh, p0, v, src)) = &cut {
                        let (cx, cy) = (p0.0 + v.0 * k as f32, p0.1 + v.1 * k as f32);
                        let (ex, ey) = ((x as f32 - cx) / rw, (y as f32 - cy) / rh);
                        let r2 = ex * ex + ey * ey;
                        if r2 < 1.0 {
                            let alpha = ((1.0 - r2) * 6.0).min(1.0);
                            let op = sample(o, src.0 + x as f32 - cx, src.1 + y as f32 - cy);
                            for c in 0..3 {
                                px[c] = px[c] * (1.0 - alpha) + op[c] * alpha;
                            }
                        }
                    }
                    data.extend(px.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
                }
            }
            Frame::from_rgb(w, h, data).expect("sizes are consistent")
        })
        .collect()
}

/// A `frames`-frame `w x h` window of a decoded video: a random start, a
/// temporal stride of 1 (usually) or more (larger motion), a random crop at
/// native resolution or a downscaled view of a larger area.
pub fn video_clip(video: &[Frame], frames: usize, w: usize, h: usize, rng: &mut impl Rng) -> Option<Vec<Frame>> {
    let stride = if rng.random_bool(0.75) { 1 } else { rng.random_range(2..=3) };
    let need = (frames - 1) * stride + 1;
    if video.len() < need {
        return None;
    }
    let first = rng.random_range(0..=video.len() - need);
    let (vw, vh) = (video[0].width() as f32, video[0].height() as f32);
    let fit = (vw / w as f32).min(vh / h as f32);
    // Native crop (scale 1) or a downscaled view (scale up to what fits).
    let scale = if fit <= 1.0 || rng.random_bool(0.5) { 1.0f32.min(fit) } else { rng.random_range(1.0..fit.min(4.0)) };
    let (cw, ch) = (w as f32 * scale, h as f32 * scale);
    let x0 = rng.random_range(0.0..=(vw - cw).max(0.0));
    let y0 = rng.random_range(0.0..=(vh - ch).max(0.0));
    let flip = rng.random_bool(0.5);
    let mut clip: Vec<Frame> = (0..frames)
        .map(|k| {
            let f = &video[first + k * stride];
            let mut data = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let px = sample(f, x0 + (xx as f32 + 0.5) * scale - 0.5, y0 + (y as f32 + 0.5) * scale - 0.5);
                    data.extend(px.iter().map(|v| v.round() as u8));
                }
            }
            Frame::from_rgb(w, h, data).expect("sizes are consistent")
        })
        .collect();
    if rng.random_bool(0.3) {
        clip.reverse();
    }
    Some(clip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn still() -> Frame {
        let (w, h) = (64, 48);
        let d = (0..w * h).flat_map(|i| [(i % w * 4) as u8, (i / w * 5) as u8, ((i * 7) % 256) as u8]).collect();
        Frame::from_rgb(w, h, d).unwrap()
    }

    #[test]
    fn camera_clips_move_and_have_the_asked_size() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let s = still();
        let clip = camera_clip(&s, Some(&s), 5, 24, 16, &mut rng);
        assert_eq!(clip.len(), 5);
        assert!(clip.iter().all(|f| (f.width(), f.height()) == (24, 16)));
        assert_ne!(clip[0], clip[4], "no motion");
    }

    #[test]
    fn video_clips_need_enough_frames() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let v: Vec<Frame> = (0..3).map(|_| still()).collect();
        assert!(video_clip(&v, 8, 16, 16, &mut rng).is_none());
        let v: Vec<Frame> = (0..20).map(|_| still()).collect();
        let c = video_clip(&v, 8, 16, 16, &mut rng).unwrap();
        assert_eq!(c.len(), 8);
    }
}
