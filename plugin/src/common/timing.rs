//! Timing helpers and the `weft-fill` message.

use gst::prelude::*;

use super::*;

/// Duration of one frame: from the caps' frame rate, else from the buffer.
pub fn frame_duration(info: &gst_video::VideoInfo, buffer: Option<&gst::BufferRef>) -> Option<gst::ClockTime> {
    let fps = info.fps();
    if fps.numer() > 0 && fps.denom() > 0 {
        gst::ClockTime::SECOND.mul_div_round(fps.denom() as u64, fps.numer() as u64).filter(|d| !d.is_zero())
    } else {
        buffer.and_then(|b| b.duration()).filter(|d| !d.is_zero())
    }
}

/// Duration of one frame of a stream: from the caps' frame rate, else
/// `last`, the one its buffers had.
pub fn stream_frame_duration(
    info: Option<&gst_video::VideoInfo>,
    last: Option<gst::ClockTime>,
) -> Option<gst::ClockTime> {
    info.and_then(|i| frame_duration(i, None)).or(last)
}

/// Frames of `dur` to generate: `duration` rounded up to whole frames when
/// set, else `frames`.
pub fn frame_count(duration: Option<gst::ClockTime>, frames: u32, dur: gst::ClockTime) -> u64 {
    match duration {
        Some(d) => d.nseconds().div_ceil(dur.nseconds()),
        None => frames as u64,
    }
}

/// Latency a fill adds by waiting for `frames` frames of `dur` of context
/// after it: all but the first, which arrives when it is due anyway (nothing
/// when the frame duration is unknown).
pub fn context_latency(dur: Option<gst::ClockTime>, frames: usize) -> gst::ClockTime {
    dur.unwrap_or(gst::ClockTime::ZERO) * (frames.saturating_sub(1) as u64)
}

/// Number of whole frames of `dur` in `span`, rounded to nearest.
pub fn frames_in(span: gst::ClockTime, dur: gst::ClockTime) -> u64 {
    (span.nseconds() + dur.nseconds() / 2) / dur.nseconds()
}

pub fn post_fill_message(
    element: &gst::Element,
    start: gst::ClockTime,
    count: usize,
    method: &str,
    reason: &str,
    dur: gst::ClockTime,
    seconds: Option<f64>,
) {
    let mut s = gst::Structure::builder(FILL_MESSAGE)
        .field("start", start.nseconds())
        .field("count", count as u32)
        .field("method", method)
        .field("reason", reason)
        .field("frame-duration", dur.nseconds())
        .build();
    if let Some(secs) = seconds {
        s.set("seconds", secs);
    }
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
}


/// Headroom on the worst generation time a live LATENCY answer includes,
/// in quarters of it: scheduling jitter on top of the worst fill seen.
const HEADROOM_QUARTERS: u32 = 1;

/// Test hook: `WEFT_TEST_FILL_DELAY_MS=N` makes every fill of a weft element
/// take N ms more per frame (a sleep before generating), so tests can make
/// generation slower than a live stream deterministically. Not for use
/// outside tests.
pub const TEST_FILL_DELAY_ENV: &str = "WEFT_TEST_FILL_DELAY_MS";

/// The test delay of a fill of `n` frames, if [`TEST_FILL_DELAY_ENV`] is set.
pub fn test_fill_delay(n: usize) -> Option<std::time::Duration> {
    static MS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let ms = (*MS.get_or_init(|| std::env::var(TEST_FILL_DELAY_ENV).ok().and_then(|v| v.trim().parse().ok())))?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms * n as u64))
}

/// Pacing of an element's fills against a live stream: how long generation
/// takes (measured on the src task, time spent pushing downstream left out),
/// the latency the pipeline configured (the LATENCY event), and the segment
/// of the data being pushed. A fill that would push the original after it
/// later than the sink is to render it is held instead ([`Pace::late`]), and
/// a live LATENCY answer includes the worst generation time of one fill
/// ([`Pace::allowance`]). Only elements that [`Pace::enable`] it use it.
#[derive(Default)]
pub struct Pace {
    state: std::sync::Mutex<PaceState>,
}

#[derive(Default)]
struct PaceState {
    enabled: bool,
    /// Upstream answered live to the last LATENCY query.
    live: bool,
    /// The pipeline latency of the last LATENCY event.
    latency: Option<gst::ClockTime>,
    /// The last segment pushed downstream.
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Worst generation time of one fill.
    worst: Option<std::time::Duration>,
    /// Moving average of the generation seconds per frame.
    per_frame: Option<f64>,
    /// The generation time the last live LATENCY answer included.
    reported: gst::ClockTime,
}

/// A fill that would be late: by how much, and how long it was estimated to take.
#[derive(Clone, Copy, Debug)]
pub struct Late {
    pub by: gst::ClockTime,
    pub estimate: gst::ClockTime,
}

impl Pace {
    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The element paces its fills (weftinfill).
    pub fn enable(&self) {
        self.lock().enabled = true;
    }

    /// Forgets the stream (the src pad deactivated); measurements stay.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.live = false;
        s.latency = None;
        s.segment = None;
        s.reported = gst::ClockTime::ZERO;
    }

    pub fn set_latency(&self, latency: gst::ClockTime) {
        self.lock().latency = Some(latency);
    }

    pub fn set_segment(&self, segment: gst::FormattedSegment<gst::ClockTime>) {
        self.lock().segment = Some(segment);
    }

    /// What a LATENCY answer adds for generation, given upstream's
    /// liveness: for a live upstream the worst generation time of one fill
    /// seen so far, a quarter more for jitter; nothing otherwise.
    pub fn allowance(&self, live: bool) -> gst::ClockTime {
        let mut s = self.lock();
        s.live = live;
        if !s.enabled || !live {
            return gst::ClockTime::ZERO;
        }
        let a = s.worst.map_or(gst::ClockTime::ZERO, |w| {
            gst::ClockTime::from_nseconds((w.as_nanos() as u64).saturating_mul(4 + HEADROOM_QUARTERS as u64) / 4)
        });
        s.reported = a;
        a
    }

    /// Records a fill of `n` frames that took `generation` (pushing left
    /// out). When a live pipeline's latency no longer covers the worst one,
    /// posts a LATENCY message so the pipeline asks again.
    pub fn record(&self, element: &gst::Element, n: usize, generation: std::time::Duration) {
        let repost = {
            let mut s = self.lock();
            if !s.enabled || n == 0 {
                return;
            }
            s.worst = Some(s.worst.map_or(generation, |w| w.max(generation)));
            let pf = generation.as_secs_f64() / n as f64;
            s.per_frame = Some(s.per_frame.map_or(pf, |a| 0.7 * a + 0.3 * pf));
            s.live && s.worst.is_some_and(|w| w.as_nanos() as u64 > s.reported.nseconds())
        };
        if repost {
            gst::debug!(CAT, obj = element, "worst fill now {:?}: asking the pipeline to update its latency", generation);
            let _ = element.post_message(gst::message::Latency::builder().src(element).build());
        }
    }

    /// Whether a fill of `n` frames of `dur` from `start`, started now,
    /// would push the original after it later than it is due (its running
    /// time plus the pipeline latency on the element's clock). Only for a
    /// live upstream, once a fill was measured (the first one is generated
    /// whatever its lateness, to measure it), while the element has a clock.
    pub fn late(
        &self,
        element: &gst::Element,
        start: gst::ClockTime,
        dur: gst::ClockTime,
        n: usize,
    ) -> Option<Late> {
        let (latency, segment, per_frame) = {
            let s = self.lock();
            if !s.enabled || !s.live {
                return None;
            }
            (s.latency?, s.segment.clone()?, s.per_frame?)
        };
        let rt = segment.to_running_time(start + dur * n as u64)?;
        let clock = element.clock()?;
        let base = element.base_time()?;
        let now = clock.time();
        let estimate = gst::ClockTime::from_nseconds((per_frame * n as f64 * 1e9) as u64);
        let due = base + rt + latency;
        let ready = now + estimate;
        (ready > due).then(|| Late { by: ready - due, estimate })
    }
}
