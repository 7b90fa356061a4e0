//! Where the flow of each frame to generate starts: the model's [`Prior`].
//!
//! For a `blend` or `motion` prior, a slot with known frames on both sides
//! starts from an in-between estimate of the nearest known frame on each side
//! at its time distance (a cross-fade, or a motion-compensated interpolation);
//! a slot with known frames on one side only (extension) starts from the
//! nearest one held. When the whole plan has a single known frame (animate),
//! a `motion` prior starts every slot from that still seen by a slow camera
//! push-in ([`camera`]: a zoom about the centre growing by [`ZOOM_PER_FRAME`]
//! per frame of distance), so a deterministic model has motion to refine
//! instead of regressing to the still. Training computes the very same
//! estimates on its windows, so the model learns the path from exactly what
//! inference gives it.
//!
//! At inference a gap longer than a model window is generated window by
//! window, later windows seeing earlier generated frames as context. The
//! in-between estimate is still taken between the *real* frames that bracket
//! the gap ([`Bracket`]), never from a generated frame: re-estimating motion
//! from an estimate compounds its errors, and the motion pair of a gap is
//! estimated once for all its windows ([`PairCache`]).

use std::collections::HashMap;

use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::Prior;

use super::motion::MotionPair;

/// Cross-fade `(1 - s) * a + s * b`, rounded.
pub(crate) fn cross_fade(a: &Frame, b: &Frame, s: f32) -> Frame {
    let data = a.data().iter().zip(b.data()).map(|(x, y)| (*x as f32 * (1.0 - s) + *y as f32 * s).round() as u8).collect();
    Frame::from_rgb(a.width(), a.height(), data).expect("same size as a")
}

/// The real known frames on both sides of a slot to generate: the plan
/// positions of the two (the key of their motion pair), the frames, and the
/// slot's fraction of the way from the first to the second.
#[derive(Clone, Copy)]
pub(crate) struct Bracket<'f> {
    pub key: (i64, i64),
    pub a: &'f Frame,
    pub b: &'f Frame,
    pub s: f32,
}

/// Zoom added per frame of distance from the still, for an animate plan.
/// 0.4 % a frame: edges move ~1.3 px a frame at 640x480, and a 10-second clip
/// at 25 fps ends about 2.7x closer in.
pub(crate) const ZOOM_PER_FRAME: f32 = 0.004;

/// Where the estimate of a slot to generate comes from, decided over the
/// whole plan (see the module docs).
#[derive(Clone, Copy)]
pub(crate) enum Basis<'f> {
    /// Between the real known frames around the slot.
    Between(Bracket<'f>),
    /// The plan's only known frame, `d` frames away (either direction).
    Camera { still: &'f Frame, d: f32 },
}

/// `still` seen by a camera pushed in for `|d|` frames: zoomed about the
/// centre by `(1 + ZOOM_PER_FRAME)^|d|`, bilinear.
pub(crate) fn camera(still: &Frame, d: f32) -> Frame {
    let z = (1.0 + ZOOM_PER_FRAME).powf(d.abs());
    let (w, h) = (still.width(), still.height());
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let sy = cy + (y as f32 - cy) / z;
        for x in 0..w {
            let sx = cx + (x as f32 - cx) / z;
            let p = super::motion::sample(still.data(), w, h, sx, sy);
            out.extend(p.map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    Frame::from_rgb(w, h, out).expect("same size as the still")
}

/// The plan-level bases of a window's slots when the window is the whole
/// plan (training): a single known frame makes an animate plan.
fn window_bases<'f>(slots: &[(f32, Option<&'f Frame>)]) -> Vec<Option<Basis<'f>>> {
    let known: Vec<(f32, &Frame)> = slots.iter().filter_map(|(t, f)| f.map(|f| (*t, f))).collect();
    match known.as_slice() {
        [(tk, still)] => slots
            .iter()
            .map(|(t, f)| if f.is_none() { Some(Basis::Camera { still, d: t - tk }) } else { None })
            .collect(),
        _ => vec![None; slots.len()],
    }
}

/// Motion pairs keyed by the plan positions of their two frames, so every
/// window of one gap reuses the motion estimated for it.
#[derive(Default)]
pub(crate) struct PairCache {
    pairs: HashMap<(i64, i64), MotionPair>,
}

impl PairCache {
    /// Drops every pair but those whose key satisfies `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(&(i64, i64)) -> bool) {
        self.pairs.retain(|k, _| keep(k));
    }
}

fn between(prior: Prior, cache: &mut PairCache, br: Bracket<'_>) -> Frame {
    let s = br.s.clamp(0.0, 1.0);
    match prior {
        Prior::Motion => {
            cache.pairs.entry(br.key).or_insert_with(|| MotionPair::estimate(br.a, br.b)).interpolate(br.a, br.b, s)
        }
        _ => cross_fade(br.a, br.b, s),
    }
}

/// The starting estimate of every slot to generate, in slot order, given the
/// time position of every slot and the frames of the known ones, the window
/// being the whole plan (as in training). `None` for the `noise` prior.
/// Fails when no slot is known.
pub(crate) fn estimates(prior: Prior, slots: &[(f32, Option<&Frame>)]) -> Result<Option<Vec<Frame>>> {
    estimates_from(prior, slots, &window_bases(slots), &mut PairCache::default())
}

/// Like [`estimates`], but a slot to generate with a basis in the plan
/// (`bases[i]`: the real known frames around it, or the plan's only still)
/// is estimated from that, whatever the window holds; the others from the
/// window's own nearest frames.
pub(crate) fn estimates_from(
    prior: Prior,
    slots: &[(f32, Option<&Frame>)],
    bases: &[Option<Basis<'_>>],
    cache: &mut PairCache,
) -> Result<Option<Vec<Frame>>> {
    if prior == Prior::Noise {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut local = PairCache::default();
    for (i, (t, f)) in slots.iter().enumerate() {
        if f.is_some() {
            continue;
        }
        match bases[i] {
            Some(Basis::Between(b)) => {
                out.push(between(prior, cache, b));
                continue;
            }
            Some(Basis::Camera { still, d }) if prior == Prior::Motion => {
                out.push(camera(still, d));
                continue;
            }
            _ => {}
        }
        let before = (0..i).rev().find(|&j| slots[j].1.is_some());
        let after = (i + 1..slots.len()).find(|&j| slots[j].1.is_some());
        let est = match (before, after) {
            (Some(a), Some(b)) => {
                let (a_, b_) = (slots[a].1.expect("known"), slots[b].1.expect("known"));
                let s = (t - slots[a].0) / (slots[b].0 - slots[a].0);
                // Window-local pairs: keyed by slot index, in a cache of this
                // window's own.
                between(prior, &mut local, Bracket { key: (a as i64, b as i64), a: a_, b: b_, s })
            }
            (Some(j), None) | (None, Some(j)) => slots[j].1.expect("known").clone(),
            (None, None) => return Err(WeftError::BadPlan("a window has no known frame to start from".into())),
        };
        out.push(est);
    }
    Ok(Some(out))
}
