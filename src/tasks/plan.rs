//! The conditioning plan: a timeline of frame slots, each known (clean pixels
//! that are never altered) or to generate. Infill, extend and animate are
//! only different plans.

use crate::error::{Result, WeftError};
use crate::frame::Frame;

/// One slot of a plan.
#[derive(Clone, Copy, Debug)]
pub enum Slot<'a> {
    /// A frame that exists: used as clean context, returned unchanged.
    Known(&'a Frame),
    /// A frame to generate.
    Generate,
}

/// Which way an extension goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// New frames after the last one.
    #[default]
    Forward,
    /// New frames before the first one.
    Backward,
}

/// Frame slots at integer positions on the clip's frame grid (frame numbers
/// at the stream's rate). Positions need not be contiguous: known frames far
/// from a gap keep their true distance in time. They must lie within
/// ±[`MAX_POSITION`] (no arithmetic on them overflows), and the models see
/// times counted from the plan's first slot in f32: slots whose times f32
/// cannot tell apart (one position apart, 2^24 or more from the first slot)
/// are an error.
///
/// [`MAX_POSITION`]: Plan::MAX_POSITION
#[derive(Clone, Debug, Default)]
pub struct Plan<'a> {
    entries: Vec<(i64, Slot<'a>)>,
}

impl<'a> Plan<'a> {
    /// The largest position a plan may use, either way from 0: 2^48.
    pub const MAX_POSITION: i64 = 1 << 48;

    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a known frame at `pos`.
    pub fn known(mut self, pos: i64, frame: &'a Frame) -> Self {
        self.entries.push((pos, Slot::Known(frame)));
        self
    }

    /// Adds a slot to generate at `pos`.
    pub fn generate(mut self, pos: i64) -> Self {
        self.entries.push((pos, Slot::Generate));
        self
    }

    /// Adds a slot.
    pub fn push(&mut self, pos: i64, slot: Slot<'a>) {
        self.entries.push((pos, slot));
    }

    /// `before` at positions `0..b`, a gap of `n` frames, then `after`.
    pub fn infill(before: &'a [Frame], n: usize, after: &'a [Frame]) -> Self {
        let mut p = Plan::new();
        let mut pos = 0i64;
        for f in before {
            p.push(pos, Slot::Known(f));
            pos += 1;
        }
        for _ in 0..n {
            p.push(pos, Slot::Generate);
            pos += 1;
        }
        for f in after {
            p.push(pos, Slot::Known(f));
            pos += 1;
        }
        p
    }

    /// `frames` followed (or preceded) by `n` frames to generate.
    pub fn extend(frames: &'a [Frame], n: usize, direction: Direction) -> Self {
        match direction {
            Direction::Forward => Self::infill(frames, n, &[]),
            Direction::Backward => Self::infill(&[], n, frames),
        }
    }

    /// A clip of `n` frames whose first frame is `still`.
    pub fn animate(still: &'a Frame, n: usize) -> Self {
        let mut p = Plan::new().known(0, still);
        for i in 1..n as i64 {
            p.push(i, Slot::Generate);
        }
        p
    }

    /// The slots sorted by position.
    pub fn entries(&self) -> &[(i64, Slot<'a>)] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of slots to generate.
    pub fn to_generate(&self) -> usize {
        self.entries.iter().filter(|(_, s)| matches!(s, Slot::Generate)).count()
    }

    /// Sorts the slots and checks the plan can run: no duplicate positions, at
    /// least one known frame when something is to be generated, and every
    /// known frame the same size. Returns that size.
    pub(crate) fn normalise(&mut self) -> Result<Option<(usize, usize)>> {
        self.entries.sort_by_key(|(p, _)| *p);
        if let Some((p, _)) = self.entries.iter().find(|(p, _)| p.unsigned_abs() > Self::MAX_POSITION as u64) {
            return Err(WeftError::BadPlan(format!(
                "position {p} is out of range (positions must be within ±{})",
                Self::MAX_POSITION
            )));
        }
        if let Some(w) = self.entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(WeftError::BadPlan(format!("two slots at position {}", w[0].0)));
        }
        // The times the models see (`run_plan`): each slot's distance from the first, in f32.
        let first = self.entries.first().map_or(0, |e| e.0);
        if let Some(w) = self.entries.windows(2).find(|w| (w[0].0 - first) as f32 >= (w[1].0 - first) as f32) {
            return Err(WeftError::BadPlan(format!(
                "positions {} and {} are too close for their distance from the first slot ({first}) to tell them apart",
                w[0].0, w[1].0
            )));
        }
        let mut size = None;
        for (pos, slot) in &self.entries {
            if let Slot::Known(f) = slot {
                let s = (f.width(), f.height());
                match size {
                    None => size = Some(s),
                    Some(first) if first != s => {
                        return Err(WeftError::BadPlan(format!(
                            "known frame at position {pos} is {}x{}, others are {}x{}",
                            s.0, s.1, first.0, first.1
                        )));
                    }
                    _ => {}
                }
            }
        }
        if size.is_none() && self.to_generate() > 0 {
            return Err(WeftError::BadPlan("nothing to condition on: the plan has no known frame".into()));
        }
        Ok(size)
    }
}
