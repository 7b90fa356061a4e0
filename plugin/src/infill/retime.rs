//! Frame-rate conversion: when downstream does not take the input's frame
//! rate, the src caps are the sink caps with downstream's rate (the only
//! field that may differ) and the output is constant rate at it, its slots
//! at `j / rate` from the grid origin (the first frame, moved back by whole
//! input frames to where the stream should start). The input frames are
//! placed on a fine grid of ticks on which the frame times of both rates
//! are integers (as `weft infill --fps` does): an original on a slot is
//! pushed as it is (its duration set to the slot's when the element holds
//! the only reference to it, so no copy is made), the slots between two
//! originals are generated at their own times from the real frames around
//! them (a hole is only a longer stretch; a scene cut holds the earlier
//! frame), originals between slots only condition them. Each stretch waits
//! for the originals after it that the model conditions on (the original
//! after it and one more for weft's models and LTX-Video's defaults:
//! `Core::context`), as a gap fill does. At
//! the end the slots up to the last original's end hold it.

use std::collections::VecDeque;

use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::common::{self, CAT, Item, PlanJob, PlanSlot};

use super::imp::{State, WeftInfill};
use super::settings::Settings;

fn gcd(a: u64, b: u64) -> u64 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `rate` as a reduced (numerator, denominator), `None` unless positive.
pub(super) fn reduced(rate: gst::Fraction) -> Option<(u64, u64)> {
    let (n, d) = (rate.numer(), rate.denom());
    if n <= 0 || d <= 0 {
        return None;
    }
    let g = gcd(n as u64, d as u64);
    Some((n as u64 / g, d as u64 / g))
}

/// The fine grid on which the frame times of both rates are integers: ticks
/// per input frame and per output frame, as `weft infill --fps` lays it out
/// (at least two per input frame). `None` when too fine for the plan.
fn ticks(rate_in: (u64, u64), rate_out: (u64, u64)) -> Option<(i64, i64)> {
    let ((a, b), (c, d)) = (rate_in, rate_out);
    let (a, b, c, d) = (a as u128, b as u128, c as u128, d as u128);
    let t = a / gcd(a as u64, c as u64) as u128 * c;
    let (i, o) = (b * t / a, d * t / c);
    let g = gcd(i as u64, o as u64) as u128;
    let (i, o) = (i / g, o / g);
    let (i, o) = if i == 1 { (2, 2 * o) } else { (i, o) };
    const MAX: u128 = 1 << 31;
    (i <= MAX && o <= MAX).then_some((i as i64, o as i64))
}

/// Nanoseconds of `n` frames at `rate` (reduced numerator, denominator), rounded.
fn frames_ns(rate: (u64, u64), n: i64) -> u64 {
    let (num, den) = (rate.0 as u128, rate.1 as u128);
    let n = n.max(0) as u128;
    ((n * den * 1_000_000_000 * 2 + num) / (2 * num)) as u64
}

/// Frame-rate conversion state: the two rates, their common tick grid, and
/// the input frames on their way to the output.
pub(super) struct Retime {
    in_rate: (u64, u64),
    out_rate: (u64, u64),
    /// Ticks per input frame and per output frame.
    pub(super) in_step: i64,
    pub(super) out_step: i64,
    /// PTS of output slot 0 and input position 0; set by the first frame.
    origin: Option<gst::ClockTime>,
    /// The next output slot to push.
    next_slot: i64,
    /// The last originals placed (input positions): context before a run.
    history: VecDeque<(i64, gst::Buffer)>,
    /// Originals waiting for context after them.
    pending: VecDeque<(i64, gst::Buffer)>,
}

impl Retime {
    pub(super) fn new(in_rate: (u64, u64), out_rate: (u64, u64)) -> Option<Self> {
        let (in_step, out_step) = ticks(in_rate, out_rate)?;
        Some(Self {
            in_rate,
            out_rate,
            in_step,
            out_step,
            origin: None,
            next_slot: 0,
            history: VecDeque::new(),
            pending: VecDeque::new(),
        })
    }

    pub(super) fn reset(&mut self) {
        self.origin = None;
        self.next_slot = 0;
        self.history.clear();
        self.pending.clear();
    }

    fn origin(&self) -> gst::ClockTime {
        self.origin.unwrap_or(gst::ClockTime::ZERO)
    }

    fn slot_pts(&self, j: i64) -> gst::ClockTime {
        self.origin() + gst::ClockTime::from_nseconds(frames_ns(self.out_rate, j))
    }

    fn slot_duration(&self, j: i64) -> gst::ClockTime {
        self.slot_pts(j + 1) - self.slot_pts(j)
    }

    /// Nominal duration of an output frame.
    fn out_duration(&self) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(frames_ns(self.out_rate, 1))
    }

    /// Input position (frames at the input rate from the origin, rounded) of
    /// `pts`; `None` before the origin.
    fn in_pos(&self, pts: gst::ClockTime) -> Option<i64> {
        let off = pts.checked_sub(self.origin())?.nseconds() as u128;
        let (num, den) = (self.in_rate.0 as u128, self.in_rate.1 as u128);
        let d = den * 1_000_000_000;
        i64::try_from((off * num * 2 + d) / (2 * d)).ok()
    }

    /// The grid origin for a first frame at `pts` when the stream should
    /// start at `expected`: `pts` moved back by the whole input frames
    /// between them (a thousandth of a frame of slack for rounded PTS).
    fn origin_for(&self, pts: gst::ClockTime, expected: Option<gst::ClockTime>) -> gst::ClockTime {
        let Some(off) = expected.and_then(|e| pts.checked_sub(e)) else { return pts };
        let (num, den) = (self.in_rate.0 as u128, self.in_rate.1 as u128);
        let d = den * 1_000_000_000;
        let k = ((off.nseconds() as u128 * num + d / 1000) / d) as i64;
        pts.saturating_sub(gst::ClockTime::from_nseconds(frames_ns(self.in_rate, k)))
    }

    /// Output slots from the next one up to (not including) tick `tick`.
    fn slots_before(&self, tick: i64) -> std::ops::Range<i64> {
        let end = if tick <= 0 { 0 } else { (tick + self.out_step - 1) / self.out_step };
        self.next_slot..end.max(self.next_slot)
    }
}

/// A `weft-fill` message to post once the state lock is released.
struct Report {
    start: gst::ClockTime,
    count: usize,
    method: &'static str,
    reason: &'static str,
    dur: gst::ClockTime,
}

impl WeftInfill {
    /// A conversion run: `slots` (output slot numbers) between the
    /// originals `before` and `after` (input positions), generated, or held
    /// when `hold`.
    #[allow(clippy::too_many_arguments)]
    fn plan_job(
        &self,
        settings: &Settings,
        info: &gst_video::VideoInfo,
        rt: &Retime,
        before: &[(i64, gst::Buffer)],
        after: &[(i64, gst::Buffer)],
        slots: std::ops::Range<i64>,
        reason: &'static str,
        hold: bool,
    ) -> Option<Item> {
        let Some(model) = self.core.model() else {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("no model loaded"));
            return None;
        };
        // Plan positions in ticks from the original before the slots (small
        // numbers, whatever the position in the stream).
        let base = before.last().or(after.first())?.0 * rt.in_step;
        let known = before.iter().chain(after).map(|(p, b)| (p * rt.in_step - base, b.clone())).collect();
        let first = slots.start;
        let slots = slots
            .map(|j| PlanSlot { pos: j * rt.out_step - base, pts: rt.slot_pts(j), duration: rt.slot_duration(j) })
            .collect();
        let mut opts = common::generate_options(&settings.model);
        // Different noise for every run, reproducible for the same stream.
        opts.seed = opts.seed.wrapping_add(first as u64);
        Some(Item::Plan(Box::new(PlanJob {
            model,
            opts,
            info: info.clone(),
            known,
            slots,
            scene_threshold: Some(settings.scene_threshold),
            hold,
            reason,
            dur: rt.out_duration(),
        })))
    }

    /// Places the first pending original: the slots before it (generated
    /// from the originals around them), then itself when it sits on a slot.
    fn retime_resolve(&self, st: &mut State, settings: &Settings, items: &mut Vec<Item>, reports: &mut Vec<Report>) {
        let Some(info) = st.info.clone() else { return };
        let Some(rt) = st.retime.as_mut() else { return };
        let Some((pos, buffer)) = rt.pending.pop_front() else { return };
        let context = self.core.context();
        let after: Vec<(i64, gst::Buffer)> = std::iter::once((pos, buffer.clone()))
            .chain(rt.pending.iter().take(context.after.saturating_sub(1)).cloned())
            .collect();
        let tick = pos * rt.in_step;
        let slots = rt.slots_before(tick);
        if !slots.is_empty() {
            // Input frames missing before this one (all of them at the start).
            let missing = pos - rt.history.back().map_or(0, |h| h.0 + 1);
            let reason = if missing > 0 { "gap" } else { "retime" };
            if missing > settings.max_gap as i64 {
                gst::warning!(
                    CAT,
                    imp = self,
                    "gap of {} frame(s) before {} is longer than max-gap {}: {} slot(s) left out",
                    missing,
                    buffer.pts().display(),
                    settings.max_gap,
                    slots.end - slots.start
                );
                reports.push(Report {
                    start: rt.slot_pts(slots.start),
                    count: (slots.end - slots.start) as usize,
                    method: "skip",
                    reason,
                    dur: rt.out_duration(),
                });
            } else {
                let history: Vec<(i64, gst::Buffer)> = rt.history.iter().cloned().collect();
                if let Some(job) = self.plan_job(settings, &info, rt, &history, &after, slots.clone(), reason, false) {
                    items.push(job);
                }
            }
            rt.next_slot = slots.end;
        }
        if rt.next_slot * rt.out_step == tick {
            items.push(Item::Buffer(buffer.clone()));
            rt.next_slot += 1;
        } else {
            gst::trace!(CAT, imp = self, "original at {} is between slots: context only", buffer.pts().display());
        }
        rt.history.push_back((pos, buffer));
        while rt.history.len() > context.before {
            rt.history.pop_front();
        }
    }

    /// Places every pending original with the context there is; at the end
    /// of the stream (`end`) also the slots after the last one: up to its
    /// end, or to the end of the last GAP event, when later. Leaves `next_pts`
    /// where the output stopped.
    fn retime_finish(
        &self,
        st: &mut State,
        settings: &Settings,
        end: bool,
        items: &mut Vec<Item>,
        reports: &mut Vec<Report>,
    ) {
        while st.retime.as_ref().is_some_and(|rt| !rt.pending.is_empty()) {
            self.retime_resolve(st, settings, items, reports);
        }
        if !end {
            return;
        }
        let Some(info) = st.info.clone() else { return };
        let gap_end = st.gap_end;
        let Some(rt) = st.retime.as_mut() else { return };
        let Some(&(last, _)) = rt.history.back() else { return };
        let history: Vec<(i64, gst::Buffer)> = rt.history.iter().cloned().collect();
        let gap_pos = gap_end.and_then(|g| rt.in_pos(g)).filter(|g| *g > last + 1);
        if let Some(gap_pos) = gap_pos {
            let missing = gap_pos - last - 1;
            let slots = rt.slots_before(gap_pos * rt.in_step);
            if missing > settings.max_gap as i64 {
                gst::warning!(
                    CAT,
                    imp = self,
                    "end-gap of {} frame(s) is longer than max-gap {}",
                    missing,
                    settings.max_gap
                );
                let tail = rt.slots_before((last + 1) * rt.in_step);
                reports.push(Report {
                    start: rt.slot_pts(tail.end),
                    count: (slots.end - tail.end).max(0) as usize,
                    method: "skip",
                    reason: "end-gap",
                    dur: rt.out_duration(),
                });
            } else if !slots.is_empty() {
                if let Some(job) = self.plan_job(settings, &info, rt, &history, &[], slots.clone(), "end-gap", false) {
                    items.push(job);
                }
                rt.next_slot = slots.end;
            }
        }
        // The last original lasts one input frame: the slots before its end hold it.
        let tail = rt.slots_before((last + 1) * rt.in_step);
        if !tail.is_empty() {
            if let Some(job) = self.plan_job(settings, &info, rt, &history, &[], tail.clone(), "retime", true) {
                items.push(job);
            }
            rt.next_slot = tail.end;
        }
        st.next_pts = Some(rt.slot_pts(rt.next_slot));
    }

    /// Chain function while converting the frame rate.
    pub(super) fn retime_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let mut items = Vec::new();
        let mut reports = Vec::new();
        {
            let mut st = self.lock_state();
            let expected = st.next_pts.or(st.segment.start());
            let Some(rt) = st.retime.as_mut() else { return Err(gst::FlowError::Error) };
            let Some(pts) = buffer.pts() else {
                gst::warning!(CAT, imp = self, "buffer without PTS while converting the frame rate: dropped");
                return Ok(gst::FlowSuccess::Ok);
            };
            if rt.origin.is_none() {
                let origin = rt.origin_for(pts, expected);
                gst::debug!(CAT, imp = self, "output grid from {} (first frame at {})", origin, pts);
                rt.origin = Some(origin);
            }
            let last = rt.pending.back().or(rt.history.back()).map(|h| h.0);
            let pos = rt.in_pos(pts).filter(|p| last.is_none_or(|l| *p > l));
            let Some(pos) = pos else {
                gst::debug!(CAT, imp = self, "buffer at {} is not after the last frame: dropped", pts);
                return Ok(gst::FlowSuccess::Ok);
            };
            let mut buffer = buffer;
            let tick = pos * rt.in_step;
            if tick % rt.out_step == 0 {
                // On a slot: it will be pushed as it is. Its duration becomes
                // the slot's only where no copy is needed.
                let d = rt.slot_duration(tick / rt.out_step);
                if let Some(b) = buffer.get_mut() {
                    b.set_duration(d);
                }
            }
            rt.pending.push_back((pos, buffer));
            // Each original waits for the model's context after it.
            let after = self.core.context().after.max(1);
            while st.retime.as_ref().is_some_and(|rt| rt.pending.len() >= after) {
                self.retime_resolve(&mut st, &settings, &mut items, &mut reports);
            }
        }
        self.post_reports(reports);
        for item in items {
            self.core.worker.enqueue(item)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn post_reports(&self, reports: Vec<Report>) {
        for r in reports {
            common::post_fill_message(self.obj().upcast_ref(), r.start, r.count, r.method, r.reason, r.dur, None);
        }
    }

    /// Everything pending of a conversion queued (at the end of the stream
    /// also its tail), before `event` goes on.
    pub(super) fn retime_flush_pending(&self, end: bool) -> bool {
        let settings = self.settings();
        let mut items = Vec::new();
        let mut reports = Vec::new();
        {
            let mut st = self.lock_state();
            if st.retime.is_none() {
                return true;
            }
            self.retime_finish(&mut st, &settings, end, &mut items, &mut reports);
        }
        self.post_reports(reports);
        items.into_iter().all(|item| self.core.worker.enqueue(item).is_ok())
    }
}
