//! Where the flow of each frame to generate starts: the model's [`Prior`].
//!
//! For a `blend` or `motion` prior, a slot with known frames on both sides
//! starts from an in-between estimate of the nearest known frame on each side
//! at its time distance (a cross-fade, or a motion-compensated interpolation);
//! a slot with known frames on one side only (extension, animate) starts from
//! the nearest one held. Training computes the very same estimates on its
//! windows, so the model learns the path from exactly what inference gives it.

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

/// The starting estimate of every slot to generate, in slot order, given the
/// time position of every slot and the frames of the known ones. `None` for
/// the `noise` prior. Fails when no slot is known.
pub(crate) fn estimates(prior: Prior, slots: &[(f32, Option<&Frame>)]) -> Result<Option<Vec<Frame>>> {
    if prior == Prior::Noise {
        return Ok(None);
    }
    let mut pairs: HashMap<(usize, usize), MotionPair> = HashMap::new();
    let mut out = Vec::new();
    for (i, (t, f)) in slots.iter().enumerate() {
        if f.is_some() {
            continue;
        }
        let before = (0..i).rev().find(|&j| slots[j].1.is_some());
        let after = (i + 1..slots.len()).find(|&j| slots[j].1.is_some());
        let est = match (before, after) {
            (Some(a), Some(b)) => {
                let (fa, fb) = (slots[a].1.expect("known"), slots[b].1.expect("known"));
                let s = ((t - slots[a].0) / (slots[b].0 - slots[a].0)).clamp(0.0, 1.0);
                match prior {
                    Prior::Motion => pairs.entry((a, b)).or_insert_with(|| MotionPair::estimate(fa, fb)).interpolate(fa, fb, s),
                    _ => cross_fade(fa, fb, s),
                }
            }
            (Some(j), None) | (None, Some(j)) => slots[j].1.expect("known").clone(),
            (None, None) => return Err(WeftError::BadPlan("a window has no known frame to start from".into())),
        };
        out.push(est);
    }
    Ok(Some(out))
}
