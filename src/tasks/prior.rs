//! Where the flow of each frame to generate starts: the model's [`Prior`].
//!
//! A slot with known frames on both sides starts from an in-between estimate
//! of the nearest known frame on each side at its time distance: a
//! motion-compensated interpolation (`motion`) or a cross-fade (`blend`). A
//! slot with known frames on one side only (extension) starts, for `motion`,
//! from the motion of the two nearest known frames there continued to its
//! time ([`MotionPair::extrapolate`]) when a third known frame shows that
//! continuing predicts better than holding (see [`Bracket`]); otherwise, and
//! for `blend`, from the nearest frame held. When the whole plan has a single known frame (animate), `motion`
//! starts every slot from that still seen by a slow camera push-in
//! ([`camera`]: a zoom about the centre growing by [`ZOOM_PER_FRAME`] per
//! frame of distance), so a deterministic model has motion to refine instead
//! of regressing to the still. Which frames a slot starts from is decided
//! over the whole plan ([`basis_at`]), so every window of a long run uses the
//! real frames, and training computes the very same estimates on its
//! windows, so the model learns the path from exactly what inference gives
//! it.
//!
//! At inference a gap longer than a model window is generated window by
//! window, later windows seeing earlier generated frames as context. The
//! estimate is still taken from the *real* frames ([`Bracket`]), never from
//! a generated frame: re-estimating motion
//! from an estimate compounds its errors, and the motion pair of a gap is
//! estimated once for all its windows ([`PairCache`]).

use std::collections::{BTreeMap, HashMap};

use crate::error::{Result, WeftError};
use crate::frame::Frame;
use crate::model::{Interpolator, Prior};
use crate::model::rife::PreparedPair;

use super::motion::MotionPair;

/// Cross-fade `(1 - s) * a + s * b`, rounded.
pub(crate) fn cross_fade(a: &Frame, b: &Frame, s: f32) -> Frame {
    let data = a.data().iter().zip(b.data()).map(|(x, y)| (*x as f32 * (1.0 - s) + *y as f32 * s).round() as u8).collect();
    Frame::from_rgb(a.width(), a.height(), data).expect("same size as a")
}

/// Two real known frames a slot to generate is estimated from (the nearest
/// on each side of it, or the two nearest on its only side): the plan
/// positions of the two (the key of their motion pair), the frames, and the
/// slot's time as a fraction of the way from the first to the second
/// (outside [0, 1] for a slot outside the pair).
#[derive(Clone, Copy)]
pub(crate) struct Bracket<'f> {
    pub key: (i64, i64),
    pub a: &'f Frame,
    pub b: &'f Frame,
    pub s: f32,
    /// For a slot outside the pair (`s` > 1 or < 0): the next known frame
    /// beyond the pair on the far side from the slot and the step (in that
    /// frame's pair intervals) from it to the pair's far frame. Continuing
    /// the motion is trusted only if it predicts the pair's nearer frame
    /// from there better than holding does ([`PairCache`] keeps the verdict);
    /// without such a frame the nearest one is held.
    pub check: Option<(&'f Frame, f32)>,
    /// For a slot between the pair: known frames next to the pair that
    /// test the estimators on real frames, `(p, q, r, t)` with `q` at time
    /// `t` of the way from `p` to `r` (see [`choose`]).
    pub validation: [Option<Triple<'f>>; 2],
}

/// Three known frames on one side of a gap: `q` lies at time `t` of the
/// way from `p` to `r`, so every estimator can be scored on predicting `q`.
#[derive(Clone, Copy)]
pub(crate) struct Triple<'f> {
    pub p: &'f Frame,
    pub q: &'f Frame,
    pub r: &'f Frame,
    pub t: f32,
}

/// How frames to generate are estimated.
#[derive(Clone, Copy)]
pub(crate) enum Estimator<'m> {
    /// A weft transformer's prior (what it was trained from).
    Prior(Prior),
    /// With a flow interpolator: between real frames, the method `rule`
    /// picks; beside them (extension), the motion prior's continuation.
    Interpolator(&'m Interpolator, EstimateRule),
}

/// Which estimator fills an in-between frame when a model has a flow
/// interpolator (`--estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EstimateRule {
    /// Per gap, the estimator that best predicts real frames next to the gap
    /// from their own neighbours at (up to) the gap's time distance.
    #[default]
    Auto,
    /// The learned flow interpolator.
    Flow,
    /// The block-matching interpolator (`tasks::motion`).
    Motion,
    /// The cross-fade.
    Blend,
    /// Per gap, the mean of the three estimators weighted by the inverse
    /// fourth power of their error on the validation frames (higher mean
    /// PSNR than `auto` on weft's held-aside clips, but it can lose to the
    /// flow alone on a gap; see the README).
    Fuse,
}

impl EstimateRule {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "flow" => Self::Flow,
            "motion" => Self::Motion,
            "blend" => Self::Blend,
            "fuse" => Self::Fuse,
            _ => return None,
        })
    }
}

/// What made a generated frame (reported by the CLI and the elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// The learned flow interpolator (RIFE).
    Flow,
    /// Block-matching motion-compensated interpolation.
    Motion,
    /// Cross-fade of the frames around the gap.
    Blend,
    /// Motion of the last real frames continued (extension).
    Continued,
    /// The nearest real frame held (extension where continuing did not pass its check).
    Held,
    /// The still under a slow camera push-in (animate).
    PushIn,
    /// A trained weft transformer refining one of the above.
    Transformer,
    /// The flow, block-matching and cross-fade estimates mixed by their
    /// validation errors.
    Fused,
    /// Generated by LTX-Video, conditioned on the known frames.
    LtxVideo,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Flow => "flow-interpolation",
            Method::Motion => "block-matching",
            Method::Blend => "cross-fade",
            Method::Continued => "motion-continued",
            Method::Held => "held",
            Method::PushIn => "camera-push-in",
            Method::Transformer => "weft-transformer",
            Method::Fused => "fused-estimates",
            Method::LtxVideo => "ltx-video",
        }
    }
}

/// Zoom added per frame of distance from the still, for an animate plan.
/// 0.4 % a frame: edges move ~1.3 px a frame at 640x480, and a 10-second clip
/// at 25 fps ends about 2.7x closer in.
pub(crate) const ZOOM_PER_FRAME: f32 = 0.004;

/// Where the estimate of a slot to generate comes from, decided over the
/// whole plan (see the module docs).
#[derive(Clone, Copy)]
pub(crate) enum Basis<'f> {
    /// From two real known frames: between them (the nearest on each side
    /// of the slot, `s` in [0, 1]) or continuing their motion (the two
    /// nearest on the slot's only side, `s` > 1 after them, < 0 before).
    Pair(Bracket<'f>),
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

/// Where the estimate of the slot at plan position `p` (time position `tp`)
/// comes from, given the plan's real known frames by position (with their
/// time positions): the plan's only still (animate); else the nearest known
/// frame on each side; else, with known frames on one side only (extension),
/// the two nearest there, whose motion is continued. `None` when one side
/// has a single known frame and the other none.
pub(crate) fn basis_at<'f>(known: &BTreeMap<i64, (f32, &'f Frame)>, p: i64, tp: f32) -> Option<Basis<'f>> {
    if known.len() == 1 {
        let (_, &(tk, still)) = known.iter().next()?;
        return Some(Basis::Camera { still, d: tp - tk });
    }
    let before = known.range(..p).next_back();
    let after = known.range(p + 1..).next();
    let (a, b) = match (before, after) {
        (Some(a), Some(b)) => (a, b),
        (Some(b), None) => (known.range(..*b.0).next_back()?, b),
        (None, Some(a)) => (a, known.range(*a.0 + 1..).next()?),
        (None, None) => return None,
    };
    let ((&ka, &(ta, fa)), (&kb, &(tb, fb))) = (a, b);
    let check = match (before, after) {
        // Forward: from (c, a), step to b.
        (Some(_), None) => known.range(..ka).next_back().map(|(_, &(tc, fc))| (fc, (tb - ta) / (ta - tc))),
        // Backward: from (b, c), step back to a.
        (None, Some(_)) => known.range(kb + 1..).next().map(|(_, &(tc, fc))| (fc, -(tb - ta) / (tc - tb))),
        _ => None,
    };
    let validation = match (before, after) {
        (Some(_), Some(_)) => [triple(known, ka, ka - (kb - ka), false), triple(known, kb, kb + (kb - ka), true)],
        _ => [None, None],
    };
    Some(Basis::Pair(Bracket { key: (ka, kb), a: fa, b: fb, s: (tp - ta) / (tb - ta), check, validation }))
}

/// A validation triple with one end at the known frame `end` and the other
/// as far towards `limit` as the known frames go (at most the gap's span
/// away), the middle the known frame nearest halfway; `None` when fewer
/// than three known frames lie there.
fn triple<'f>(known: &BTreeMap<i64, (f32, &'f Frame)>, end: i64, limit: i64, after: bool) -> Option<Triple<'f>> {
    let (lo, hi) = if after { (end + 1, limit) } else { (limit, end - 1) };
    if lo > hi {
        return None;
    }
    let mut side = known.range(lo..=hi);
    let (&far, &(_, ff)) = if after { side.next_back()? } else { side.next()? };
    let (&(te, fe), &(tf, _)) = (&known[&end], &known[&far]);
    let mid = (end + far) as f64 / 2.0;
    let (lo, hi) = (end.min(far) + 1, end.max(far) - 1);
    if lo > hi {
        return None;
    }
    let (_, &(tq, fq)) =
        known.range(lo..=hi).min_by(|a, b| ((*a.0 as f64 - mid).abs()).total_cmp(&((*b.0 as f64 - mid).abs())))?;
    // p earlier than r in time.
    Some(if after {
        Triple { p: fe, q: fq, r: ff, t: (tq - te) / (tf - te) }
    } else {
        Triple { p: ff, q: fq, r: fe, t: (tq - tf) / (te - tf) }
    })
}

/// The bases of a window's slots when the window is the whole plan (as in
/// training), positions being slot indices.
fn window_bases<'f>(slots: &[(f32, Option<&'f Frame>)]) -> Vec<Option<Basis<'f>>> {
    let known: BTreeMap<i64, (f32, &Frame)> =
        slots.iter().enumerate().filter_map(|(i, (t, f))| f.map(|f| (i as i64, (*t, f)))).collect();
    slots.iter().enumerate().map(|(i, (t, f))| if f.is_none() { basis_at(&known, i as i64, *t) } else { None }).collect()
}

/// Motion pairs keyed by the plan positions of their two frames, so every
/// window of one gap reuses the motion estimated for it.
#[derive(Default)]
pub(crate) struct PairCache<'m> {
    pairs: HashMap<(i64, i64), MotionPair>,
    /// Whether continuing a pair's motion passed its check (see [`Bracket`]).
    trusted: HashMap<(i64, i64), bool>,
    /// The flow interpolator's prepared pairs (frames and features).
    flows: HashMap<(i64, i64), PreparedPair<'m>>,
    /// The in-between method chosen for each pair.
    chosen: HashMap<(i64, i64), Method>,
    /// For fused estimates: the weights of flow, block matching, cross-fade.
    weights: HashMap<(i64, i64), [f64; 3]>,
}

impl PairCache<'_> {
    /// Drops every pair but those whose key satisfies `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(&(i64, i64)) -> bool) {
        self.pairs.retain(|k, _| keep(k));
        self.trusted.retain(|k, _| keep(k));
        self.flows.retain(|k, _| keep(k));
        self.chosen.retain(|k, _| keep(k));
        self.weights.retain(|k, _| keep(k));
    }
}

/// The candidate in-between estimate of `method` for `(a, b)` at `s`.
fn between(interp: &Interpolator, method: Method, a: &Frame, b: &Frame, s: f32) -> Result<Frame> {
    Ok(match method {
        Method::Flow => interp.interpolate(a, b, s)?,
        Method::Motion => MotionPair::estimate(a, b).interpolate(a, b, s),
        _ => cross_fade(a, b, s),
    })
}

/// The candidates an in-between frame can be estimated by.
const CANDIDATES: [Method; 3] = [Method::Flow, Method::Motion, Method::Blend];

/// The in-between method for a pair under `rule`: for `Auto`, the candidate
/// (flow, block matching, cross-fade) with the least squared error over the
/// pair's validation triples; the flow interpolator when there are none.
/// For `Fuse`, [`Method::Fused`] and the candidates' weights (inverse
/// validation errors to the fourth power, normalised; the flow alone
/// without triples).
pub(crate) fn choose(interp: &Interpolator, rule: EstimateRule, br: &Bracket<'_>) -> Result<(Method, [f64; 3])> {
    let fixed = match rule {
        EstimateRule::Flow => Some(Method::Flow),
        EstimateRule::Motion => Some(Method::Motion),
        EstimateRule::Blend => Some(Method::Blend),
        EstimateRule::Auto | EstimateRule::Fuse => None,
    };
    let one = |m: Method| CANDIDATES.map(|c| if c == m { 1.0 } else { 0.0 });
    if let Some(m) = fixed {
        return Ok((m, one(m)));
    }
    let triples: Vec<&Triple<'_>> = br.validation.iter().flatten().collect();
    if triples.is_empty() {
        return Ok((Method::Flow, one(Method::Flow)));
    }
    // Each candidate's prediction of every validation frame, and its error.
    let mut preds: Vec<[Frame; 3]> = Vec::with_capacity(triples.len());
    for tr in &triples {
        let p = |m| between(interp, m, tr.p, tr.r, tr.t);
        preds.push([p(Method::Flow)?, p(Method::Motion)?, p(Method::Blend)?]);
    }
    let mut errors = [0f64; 3];
    for (pr, tr) in preds.iter().zip(&triples) {
        for (e, f) in errors.iter_mut().zip(pr) {
            *e += sse(f, tr.q) as f64;
        }
    }
    if rule == EstimateRule::Fuse {
        let inv = errors.map(|e| (e + 1.0).powi(-4));
        let sum: f64 = inv.iter().sum();
        return Ok((Method::Fused, inv.map(|v| v / sum)));
    }
    let best = (0..3).min_by(|&a, &b| errors[a].total_cmp(&errors[b])).expect("three candidates");
    Ok((CANDIDATES[best], one(CANDIDATES[best])))
}

/// The weighted mean of frames of the same size, rounded.
fn mix(frames: &[(&Frame, f64)]) -> Frame {
    let first = frames[0].0;
    let mut acc = vec![0f64; first.data().len()];
    for (f, w) in frames {
        for (a, &v) in acc.iter_mut().zip(f.data()) {
            *a += *w * v as f64;
        }
    }
    let data = acc.into_iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    Frame::from_rgb(first.width(), first.height(), data).expect("same size")
}

/// Sum of squared differences of two frames of the same size.
fn sse(x: &Frame, y: &Frame) -> u64 {
    x.data().iter().zip(y.data()).map(|(&p, &q)| (p.abs_diff(q) as u64).pow(2)).sum()
}

/// Whether continuing the motion of `br` beats holding (see [`Bracket`]).
fn continue_motion(br: &Bracket<'_>) -> bool {
    let Some((c, step)) = br.check else { return false };
    let (pred, held, truth) = if br.s > 1.0 {
        (MotionPair::estimate(c, br.a).extrapolate(c, br.a, step, 1.0), br.a, br.b)
    } else {
        (MotionPair::estimate(br.b, c).extrapolate(br.b, c, step, 1.0), br.b, br.a)
    };
    sse(&pred, truth) < sse(held, truth)
}

fn from_pair<'m>(est: Estimator<'m>, cache: &mut PairCache<'m>, br: Bracket<'_>) -> Result<(Frame, Method)> {
    let s = if br.s.is_nan() { 0.5 } else { br.s };
    let outside = !(0.0..=1.0).contains(&s);
    let prior = match est {
        Estimator::Prior(p) => p,
        // Beside the real frames the interpolator has nothing to say: the
        // motion prior's continuation (or hold).
        Estimator::Interpolator(..) if outside => Prior::Motion,
        Estimator::Interpolator(interp, rule) => {
            if let std::collections::hash_map::Entry::Vacant(e) = cache.chosen.entry(br.key) {
                let (m, w) = choose(interp, rule, &br)?;
                e.insert(m);
                cache.weights.insert(br.key, w);
            }
            let method = cache.chosen[&br.key];
            let flow = |cache: &mut PairCache<'m>| -> Result<Frame> {
                if let std::collections::hash_map::Entry::Vacant(e) = cache.flows.entry(br.key) {
                    e.insert(interp.pair(br.a, br.b)?);
                }
                cache.flows[&br.key].at(s)
            };
            let motion = |cache: &mut PairCache<'m>| {
                cache.pairs.entry(br.key).or_insert_with(|| MotionPair::estimate(br.a, br.b)).interpolate(br.a, br.b, s)
            };
            let frame = match method {
                Method::Flow => flow(cache)?,
                Method::Motion => motion(cache),
                Method::Fused => {
                    let w = cache.weights[&br.key];
                    let (f, m, b) = (flow(cache)?, motion(cache), cross_fade(br.a, br.b, s));
                    mix(&[(&f, w[0]), (&m, w[1]), (&b, w[2])])
                }
                _ => cross_fade(br.a, br.b, s),
            };
            return Ok((frame, method));
        }
    };
    if outside && (prior != Prior::Motion || !*cache.trusted.entry(br.key).or_insert_with(|| continue_motion(&br))) {
        // The nearest frame held.
        return Ok((if s > 1.0 { br.b.clone() } else { br.a.clone() }, Method::Held));
    }
    Ok(match prior {
        Prior::Motion => {
            let pair = cache.pairs.entry(br.key).or_insert_with(|| MotionPair::estimate(br.a, br.b));
            if s > 1.0 {
                (pair.extrapolate(br.a, br.b, s - 1.0, 1.0), Method::Continued)
            } else if s < 0.0 {
                (pair.extrapolate(br.a, br.b, s, 1.0), Method::Continued)
            } else {
                (pair.interpolate(br.a, br.b, s), Method::Motion)
            }
        }
        _ => (cross_fade(br.a, br.b, s), Method::Blend),
    })
}

/// The starting estimate of every slot to generate, in slot order, given the
/// time position of every slot and the frames of the known ones, the window
/// being the whole plan (as in training). `None` for the `noise` prior.
/// Fails when no slot is known.
pub(crate) fn estimates(prior: Prior, slots: &[(f32, Option<&Frame>)]) -> Result<Option<Vec<Frame>>> {
    if prior == Prior::Noise {
        return Ok(None);
    }
    let est = estimates_from(Estimator::Prior(prior), slots, &window_bases(slots), &mut PairCache::default())?;
    Ok(Some(est.into_iter().map(|(f, _)| f).collect()))
}

/// Like [`estimates`], but a slot to generate with a basis in the plan
/// (`bases[i]`: two real known frames, or the plan's only still)
/// is estimated from that, whatever the window holds; the others from the
/// window's own nearest frames.
///
/// Each estimate comes with the method that made it. A `noise` prior has no
/// estimate of its own: it is estimated as `blend`.
pub(crate) fn estimates_from<'m>(
    est: Estimator<'m>,
    slots: &[(f32, Option<&Frame>)],
    bases: &[Option<Basis<'_>>],
    cache: &mut PairCache<'m>,
) -> Result<Vec<(Frame, Method)>> {
    let est = match est {
        Estimator::Prior(Prior::Noise) => Estimator::Prior(Prior::Blend),
        e => e,
    };
    let camera_ok = !matches!(est, Estimator::Prior(Prior::Blend));
    let mut out = Vec::new();
    let mut local = PairCache::default();
    for (i, (t, f)) in slots.iter().enumerate() {
        if f.is_some() {
            continue;
        }
        match bases[i] {
            Some(Basis::Pair(b)) => {
                out.push(from_pair(est, cache, b)?);
                continue;
            }
            Some(Basis::Camera { still, d }) if camera_ok => {
                out.push((camera(still, d), Method::PushIn));
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
                let br = Bracket { key: (a as i64, b as i64), a: a_, b: b_, s, check: None, validation: [None, None] };
                from_pair(est, &mut local, br)?
            }
            (Some(j), None) | (None, Some(j)) => (slots[j].1.expect("known").clone(), Method::Held),
            (None, None) => return Err(WeftError::BadPlan("a window has no known frame to start from".into())),
        };
        out.push(est);
    }
    Ok(out)
}
