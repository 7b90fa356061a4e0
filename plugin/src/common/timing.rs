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

/// Latency a fill adds by waiting for its context: all but one of
/// [`CONTEXT`] frames of `dur` (nothing when the frame duration is unknown).
pub fn context_latency(dur: Option<gst::ClockTime>) -> gst::ClockTime {
    dur.unwrap_or(gst::ClockTime::ZERO) * (CONTEXT as u64 - 1)
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

