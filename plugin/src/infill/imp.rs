//! weftinfill: compares each buffer's PTS with where the negotiated frame rate
//! says the next frame should be; a hole of up to `max-gap` frames becomes a
//! fill job queued in front of the buffer after the hole. The src-pad task
//! waits for a second frame after the hole (context), generates the missing
//! frames, pushes them, then the queued originals.
//!
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
//! for the original after it and one more (context), as a gap fill does. At
//! the end the slots up to the last original's end hold it.

use std::collections::VecDeque;
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::common::{self, CAT, FillJob, Item, ModelSettings, PlanJob, PlanSlot};
use crate::element::{self, Core, WeftElementImpl};

use super::dups;

const DEFAULT_MAX_GAP: u32 = 30;
const DEFAULT_SCENE_THRESHOLD: f64 = weft::analysis::DEFAULT_SCENE_THRESHOLD;

#[derive(Clone, Debug)]
struct Settings {
    model: ModelSettings,
    max_gap: u32,
    scene_threshold: f64,
    dups: dups::DupSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            max_gap: DEFAULT_MAX_GAP,
            scene_threshold: DEFAULT_SCENE_THRESHOLD,
            dups: dups::DupSettings::default(),
        }
    }
}

/// Sink-side view of the stream.
struct State {
    info: Option<gst_video::VideoInfo>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// The last few original buffers (context before a gap).
    history: VecDeque<gst::Buffer>,
    /// Where the next frame should start.
    next_pts: Option<gst::ClockTime>,
    /// End of the last GAP event.
    gap_end: Option<gst::ClockTime>,
    /// Frame duration of the last buffer.
    dur: Option<gst::ClockTime>,
    /// Frame-rate conversion, when the src caps' rate differs.
    retime: Option<Retime>,
    /// `replace-duplicates` detection.
    dups: dups::Detector,
    /// The src caps picked for the sink caps.
    out_caps: Option<gst::Caps>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            info: None,
            segment: gst::FormattedSegment::new(),
            history: VecDeque::new(),
            next_pts: None,
            gap_end: None,
            dur: None,
            retime: None,
            out_caps: None,
            dups: dups::Detector::default(),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `rate` as a reduced (numerator, denominator), `None` unless positive.
fn reduced(rate: gst::Fraction) -> Option<(u64, u64)> {
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
struct Retime {
    in_rate: (u64, u64),
    out_rate: (u64, u64),
    /// Ticks per input frame and per output frame.
    in_step: i64,
    out_step: i64,
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
    fn new(in_rate: (u64, u64), out_rate: (u64, u64)) -> Option<Self> {
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

    fn reset(&mut self) {
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

/// `caps` with any frame rate.
fn any_rate(caps: &gst::Caps) -> gst::Caps {
    let mut c = caps.clone();
    for s in c.make_mut().iter_mut() {
        s.set("framerate", gst::FractionRange::new(gst::Fraction::new(0, 1), gst::Fraction::new(i32::MAX, 1)));
    }
    c
}

pub struct WeftInfill {
    core: Core,
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl WeftInfill {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        element::lock(&self.state)
    }

    fn settings(&self) -> Settings {
        element::lock(&self.settings).clone()
    }

    /// A fill for `n` frames from `start`, or a report when it is too long.
    #[allow(clippy::too_many_arguments)]
    fn gap_job(
        &self,
        settings: &Settings,
        info: &gst_video::VideoInfo,
        history: &VecDeque<gst::Buffer>,
        start: gst::ClockTime,
        dur: gst::ClockTime,
        n: u64,
        at_end: bool,
    ) -> Option<Item> {
        let reason = if at_end { "end-gap" } else { "gap" };
        if n > settings.max_gap as u64 {
            gst::warning!(
                CAT,
                imp = self,
                "{} of {} frame(s) at {} is longer than max-gap {}: passing it through",
                reason,
                n,
                start,
                settings.max_gap
            );
            common::post_fill_message(self.obj().upcast_ref(), start, n as usize, "skip", reason, dur, None);
            return None;
        }
        let Some(model) = self.core.model() else {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("no model loaded"));
            return None;
        };
        gst::info!(CAT, imp = self, "{}: {} frame(s) missing at {}", reason, n, start);
        Some(Item::Fill(Box::new(FillJob {
            model,
            opts: common::generate_options(&settings.model),
            info: info.clone(),
            before: history.iter().cloned().collect(),
            after: Vec::new(),
            want_after: if at_end { 0 } else { common::CONTEXT },
            start,
            dur,
            n: n as usize,
            scene_threshold: Some(settings.scene_threshold),
            reason,
        })))
    }

    /// At EOS: fill up to the end of the last GAP event.
    fn end_fill(&self) -> Option<Item> {
        let settings = self.settings();
        let st = self.lock_state();
        let (Some(gap_end), Some(info)) = (st.gap_end, st.info.as_ref()) else { return None };
        let dur = common::frame_duration(info, None).or(st.dur)?;
        let Some(next) = st.next_pts else {
            gst::warning!(CAT, imp = self, "GAP events but no frame to generate from: nothing filled");
            return None;
        };
        if gap_end <= next {
            return None;
        }
        let n = common::frames_in(gap_end - next, dur);
        if n == 0 {
            return None;
        }
        self.gap_job(&settings, info, &st.history, next, dur, n, true)
    }
}

impl WeftInfill {
    /// The src caps for sink caps `caps`: the same when downstream takes
    /// them, else downstream's frame rate nearest the input's.
    fn output_caps(&self, caps: &gst::Caps) -> Option<gst::Caps> {
        let srcpad = &self.core.srcpad;
        if srcpad.peer_query_accept_caps(caps) {
            return Some(caps.clone());
        }
        let fps = caps.structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok())?;
        let wide = any_rate(caps);
        let peer = srcpad.peer_query_caps(Some(&wide));
        let mut out = wide.intersect_with_mode(&peer, gst::CapsIntersectMode::First);
        if out.is_empty() {
            return None;
        }
        out.truncate();
        if let Some(s) = out.make_mut().structure_mut(0) {
            s.fixate_field_nearest_fraction("framerate", fps);
        }
        out.fixate();
        Some(out)
    }

    /// Sets the sink caps `caps` (`info`) and picks the src caps: a
    /// conversion under the old ones ends first. `None` (an error posted)
    /// when downstream takes none.
    fn negotiate(&self, caps: &gst::Caps, info: gst_video::VideoInfo) -> Option<gst::Caps> {
        // A conversion under the old caps ends here.
        if !self.retime_flush_pending(true) {
            return None;
        }
        let Some(out) = self.output_caps(caps) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("downstream accepts no video like {} at any frame rate", caps)
            );
            return None;
        };
        let out_fps = match gst_video::VideoInfo::from_caps(&out) {
            Ok(i) => i.fps(),
            Err(e) => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("unsupported caps {}: {}", out, e));
                return None;
            }
        };
        let retime = match (reduced(info.fps()), reduced(out_fps)) {
            (Some(a), Some(b)) if a != b => match Retime::new(a, b) {
                Some(rt) => Some(rt),
                None => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("no common frame grid for {} and {} fps (pick a simpler rate)", info.fps(), out_fps)
                    );
                    return None;
                }
            },
            _ => None,
        };
        if let Some(rt) = &retime {
            gst::info!(
                CAT,
                imp = self,
                "converting {} to {} fps ({} and {} ticks a frame)",
                info.fps(),
                out_fps,
                rt.in_step,
                rt.out_step
            );
        }
        let mut st = self.lock_state();
        // Frames of the old caps cannot condition frames of the new ones.
        st.history.clear();
        st.dur = None;
        st.info = Some(info);
        st.retime = retime;
        st.out_caps = Some(out.clone());
        Some(out)
    }

    /// Downstream asked to renegotiate: picks the src caps again for the
    /// current sink caps and, when they change, queues them (after what the
    /// old ones still owe).
    fn renegotiate(&self) -> Result<(), gst::FlowError> {
        let (caps, old) = {
            let st = self.lock_state();
            (self.core.sinkpad.current_caps(), st.out_caps.clone())
        };
        let (Some(caps), Some(old)) = (caps, old) else { return Ok(()) };
        let Some(out) = self.output_caps(&caps) else {
            self.core.srcpad.mark_reconfigure();
            return Err(gst::FlowError::NotNegotiated);
        };
        if out == old {
            return Ok(());
        }
        gst::debug!(CAT, imp = self, "downstream renegotiated: {} -> {}", old, out);
        let info = gst_video::VideoInfo::from_caps(&caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        let out = self.negotiate(&caps, info).ok_or(gst::FlowError::NotNegotiated)?;
        self.core.worker.enqueue(Item::Event(gst::event::Caps::new(&out)))?;
        Ok(())
    }

    /// CAPS query on `pad`: the caps the peer of `other` (the other pad)
    /// takes, at the same frame rates first (passthrough), then at any.
    fn query_caps(&self, pad: &gst::Pad, other: &gst::Pad, filter: Option<&gst::Caps>) -> gst::Caps {
        let templ = pad.pad_template_caps();
        let peer = other.peer_query_caps(filter.map(any_rate).as_ref());
        let mut caps = if peer.is_any() {
            templ
        } else {
            let mut same = peer.intersect_with_mode(&templ, gst::CapsIntersectMode::First);
            same.merge(any_rate(&peer).intersect_with_mode(&templ, gst::CapsIntersectMode::First));
            same
        };
        if let Some(f) = filter {
            caps = f.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
        }
        gst::log!(CAT, obj = pad, "caps query: {}", caps);
        caps
    }

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
        let after: Vec<(i64, gst::Buffer)> = std::iter::once((pos, buffer.clone()))
            .chain(rt.pending.iter().take(common::CONTEXT - 1).cloned())
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
        while rt.history.len() > common::CONTEXT {
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
    fn retime_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
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
            while st.retime.as_ref().is_some_and(|rt| rt.pending.len() >= common::CONTEXT) {
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
    fn retime_flush_pending(&self, end: bool) -> bool {
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

impl WeftInfill {
    /// `replace-duplicates` (`dups.rs`): `None` when `buffer` repeats the
    /// frame before it and is dropped (its time covered as by a GAP event,
    /// so a run at the end is generated at EOS), else the number of repeats
    /// dropped just before it.
    fn check_duplicate(&self, buffer: &gst::Buffer) -> Result<Option<u32>, gst::FlowError> {
        let settings = self.settings();
        let mut st = self.lock_state();
        let Some(info) = st.info.clone() else { return Ok(Some(0)) };
        match st.dups.check(&settings.dups, &info, buffer, settings.max_gap) {
            Ok(dups::Verdict::Pass { after }) => Ok(Some(after)),
            Ok(dups::Verdict::Drop) => {
                let dur = buffer.duration().or_else(|| common::frame_duration(&info, None));
                if let (Some(pts), Some(dur)) = (buffer.pts(), dur) {
                    st.gap_end = Some(st.gap_end.map_or(pts + dur, |e| e.max(pts + dur)));
                }
                gst::log!(CAT, imp = self, "buffer at {:?} repeats the one before: regenerated", buffer.pts());
                Ok(None)
            }
            Err(e) => {
                drop(st);
                gst::element_imp_error!(self, gst::StreamError::Format, ("replace-duplicates: {}", e));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Repeats dropped at the end of a segment are generated before it ends.
    fn flush_duplicates(&self) -> bool {
        if self.lock_state().dups.pending() == 0 {
            return true;
        }
        self.end_fill().is_none_or(|fill| self.core.worker.enqueue(fill).is_ok())
    }
}

impl WeftElementImpl for WeftInfill {
    fn core(&self) -> &Core {
        &self.core
    }

    fn model_settings(&self) -> ModelSettings {
        self.settings().model
    }

    fn reset_state(&self) {
        *self.lock_state() = State::default();
    }

    fn sink_chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.core.srcpad.check_reconfigure() {
            self.renegotiate()?;
        }
        let Some(after_dups) = self.check_duplicate(&buffer)? else { return Ok(gst::FlowSuccess::Ok) };
        let retiming = {
            let st = self.lock_state();
            st.retime.is_some() && st.segment.rate() > 0.0
        };
        if retiming {
            return self.retime_chain(buffer);
        }
        let settings = self.settings();
        let mut fill = None;
        {
            let mut st = self.lock_state();
            let Some(info) = st.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a buffer before caps"));
                return Err(gst::FlowError::NotNegotiated);
            };
            // Without a nominal frame rate (0/1), the shortest buffer
            // duration seen so far: a buffer before a hole may span it.
            let dur = common::frame_duration(&info, None)
                .or_else(|| buffer.duration().filter(|d| !d.is_zero()).map(|d| st.dur.map_or(d, |s| s.min(d))));
            match (buffer.pts(), dur) {
                (Some(pts), Some(dur)) if st.segment.rate() > 0.0 => {
                    // The first buffer of a segment should sit at its start.
                    let expected = st.next_pts.or(st.segment.start());
                    if let Some(exp) = expected.filter(|e| pts > *e) {
                        let n = common::frames_in(pts - exp, dur);
                        if n > 0 {
                            gst::debug!(
                                CAT,
                                imp = self,
                                "buffer at {} expected at {}: {} frame(s) missing",
                                pts,
                                exp,
                                n
                            );
                            fill = self.gap_job(&settings, &info, &st.history, exp, dur, n, false);
                        }
                    }
                    st.next_pts = Some(st.next_pts.map_or(pts + dur, |n| n.max(pts + dur)));
                    st.dur = Some(dur);
                    st.history.push_back(buffer.clone());
                    while st.history.len() > common::CONTEXT {
                        st.history.pop_front();
                    }
                }
                _ => {
                    gst::log!(CAT, imp = self, "buffer without PTS or frame duration: passed through");
                }
            }
        }
        if let Some(Item::Fill(job)) = fill.as_mut().filter(|_| after_dups > 0) {
            job.reason = "duplicate";
        }
        if let Some(fill) = fill {
            self.core.worker.enqueue(fill)?;
        }
        self.core.worker.enqueue(Item::Buffer(buffer))
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {:?}", event);
        let mut replacement = None;
        match event.view() {
            EventView::FlushStart(_) => {
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::FlushStop(_) => {
                {
                    let mut st = self.lock_state();
                    st.history.clear();
                    st.next_pts = None;
                    st.gap_end = None;
                    st.dups.reset();
                    if let Some(rt) = st.retime.as_mut() {
                        rt.reset();
                    }
                }
                return self.core.handle_flush(self.obj().upcast_ref(), event);
            }
            EventView::StreamStart(_) => {
                if !self.retime_flush_pending(true) || !self.flush_duplicates() {
                    return false;
                }
                let mut st = self.lock_state();
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
                st.dups.reset();
                if let Some(rt) = st.retime.as_mut() {
                    rt.reset();
                }
            }
            EventView::Caps(c) => {
                let info = match gst_video::VideoInfo::from_caps(c.caps()) {
                    Ok(i) => i,
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("unsupported caps {}: {}", c.caps(), e)
                        );
                        return false;
                    }
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "caps {:?} {}x{} at {}",
                    info.format(),
                    info.width(),
                    info.height(),
                    info.fps()
                );
                match self.negotiate(&c.caps_owned(), info) {
                    Some(out) if out != *c.caps() => {
                        replacement = Some(gst::event::Caps::builder(&out).seqnum(event.seqnum()).build());
                    }
                    Some(_) => {}
                    None => return false,
                }
            }
            EventView::Segment(s) => {
                let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("weftinfill needs a TIME segment"));
                    return false;
                };
                if !self.retime_flush_pending(true) || !self.flush_duplicates() {
                    return false;
                }
                let mut st = self.lock_state();
                st.segment = seg;
                st.history.clear();
                st.next_pts = None;
                st.gap_end = None;
                st.dups.reset();
                if let Some(rt) = st.retime.as_mut() {
                    rt.reset();
                }
            }
            EventView::Gap(g) => {
                // Replaced by generated frames: holes show up in the next
                // buffer's PTS, or at EOS for a gap at the end.
                let (ts, d) = g.get();
                if let Some(d) = d {
                    let mut st = self.lock_state();
                    st.gap_end = Some(st.gap_end.map_or(ts + d, |e| e.max(ts + d)));
                    gst::debug!(CAT, imp = self, "GAP event {} + {}", ts, d);
                }
                return true;
            }
            EventView::Eos(_) => {
                if self.lock_state().retime.is_some() {
                    if !self.retime_flush_pending(true) {
                        return false;
                    }
                    let mut st = self.lock_state();
                    if let Some(rt) = st.retime.as_mut() {
                        rt.reset();
                    }
                } else if let Some(fill) = self.end_fill()
                    && self.core.worker.enqueue(fill).is_err()
                {
                    return false;
                }
                let mut st = self.lock_state();
                st.gap_end = None;
                st.dups.reset();
            }
            // Other serialized events go out behind the frames before them.
            _ if event.is_serialized() && !self.retime_flush_pending(false) => return false,
            _ => {}
        }
        self.core.forward_event(replacement.unwrap_or(event))
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(q) = query.view_mut() {
            let caps = self.query_caps(pad, &self.core.srcpad, q.filter_owned().as_ref());
            q.set_result(&caps);
            return true;
        }
        // A serialized query (drain, allocation) comes after the frames before it.
        if query.is_serialized() && !self.retime_flush_pending(false) {
            return false;
        }
        self.core.sink_query(self.obj().upcast_ref(), pad, query)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(q) = query.view_mut() {
            let caps = self.query_caps(pad, &self.core.sinkpad, q.filter_owned().as_ref());
            q.set_result(&caps);
            return true;
        }
        if let gst::QueryViewMut::Latency(_) = query.view_mut() {
            // A fill waits for one more frame after the hole before it runs;
            // a conversion run for the original after it and one more, up to
            // two input frames after the first slot it makes.
            let added = {
                let st = self.lock_state();
                let dur = common::stream_frame_duration(st.info.as_ref(), st.dur);
                if st.retime.is_some() {
                    dur.unwrap_or(gst::ClockTime::ZERO) * common::CONTEXT as u64
                } else {
                    common::context_latency(dur)
                }
            };
            // With a live upstream, also the worst generation time of one fill.
            let ret = common::query_latency_paced(&self.core.sinkpad, query, added, &self.core.worker.pace);
            gst::debug!(CAT, imp = self, "latency query: added {} -> {:?}", added, query);
            return ret;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WeftInfill {
    const NAME: &'static str = "GstWeftInfill";
    type Type = super::WeftInfill;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        Self {
            // Caps are the element's own: the src caps may differ in frame rate.
            core: Core::new::<Self>(klass, gst::PadFlags::PROXY_ALLOCATION),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
        }
    }
}

impl ObjectImpl for WeftInfill {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut v = common::model_properties();
            v.extend(dups::properties());
            v.push(
                glib::ParamSpecUInt::builder("max-gap")
                    .nick("Maximum gap")
                    .blurb(
                        "Longest run of missing frames to generate; longer gaps pass through \
                         untouched and are reported in a weft-fill message with method=skip \
                         (0 = never generate)",
                    )
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(DEFAULT_MAX_GAP)
                    .mutable_playing()
                    .build(),
            );
            v.push(
                glib::ParamSpecDouble::builder("scene-threshold")
                    .nick("Scene-cut threshold")
                    .blurb(
                        "Scene score (0 = same picture, 1 = unrelated) of the frames around a gap \
                         above which the gap is a cut: the last frame is held instead of \
                         generating across it (1 = never hold)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCENE_THRESHOLD)
                    .mutable_playing()
                    .build(),
            );
            v
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = element::lock(&self.settings);
        if common::set_model_property(&mut s.model, pspec.name(), value)
            || dups::set_property(&mut s.dups, pspec.name(), value)
        {
            return;
        }
        match pspec.name() {
            "max-gap" => s.max_gap = value.get().expect("type checked"),
            "scene-threshold" => s.scene_threshold = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = element::lock(&self.settings);
        let name = pspec.name();
        if let Some(v) = common::model_property(&s.model, name).or_else(|| dups::property(&s.dups, name)) {
            return v;
        }
        match pspec.name() {
            "max-gap" => s.max_gap.to_value(),
            "scene-threshold" => s.scene_threshold.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.core.add_pads(self.obj().upcast_ref());
        // Fills are paced against a live stream: held when late (common::Pace).
        self.core.worker.pace.enable();
        let worker = self.core.worker.clone();
        self.core.srcpad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && let gst::EventView::Latency(l) = e.view()
            {
                worker.pace.set_latency(l.latency());
            }
            gst::PadProbeReturn::Ok
        });
    }
}

impl GstObjectImpl for WeftInfill {}

impl ElementImpl for WeftInfill {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Weft frame infill",
                "Filter/Effect/Video",
                "Generates the frames missing from a video stream (holes in its timestamps or GAP \
                 events) with weft's diffusion transformer, so the output runs at a constant rate; \
                 converts the frame rate to the one downstream asks for, generating the frames \
                 between the originals at their own times. Original buffers pass through \
                 unchanged; generated ones carry a WeftGeneratedMeta",
                "weft developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(element::pad_templates);
        TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "changing state {:?}", transition);
        self.weft_change_state(transition)
    }
}
