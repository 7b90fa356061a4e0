//! weftinfill behind a live source whose holes it cannot fill in time: it
//! holds the last frame for them (`weft-fill` method=hold, reason=late)
//! instead of stalling the stream, and its LATENCY answer includes the
//! worst generation time of one fill. Generation is made slow
//! deterministically with the test hook `WEFT_TEST_FILL_DELAY_MS` (every
//! fill sleeps that long per frame before generating), set for the whole
//! test process before the plugin reads it.

mod util;
mod stream;

use std::time::Duration;

use gst::prelude::*;
use stream::*;

const DELAY_MS: u64 = 150;
const STALL: Duration = Duration::from_secs(60);

fn slow_generation() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any thread of the test reads the environment
    // (the plugin reads it on its first fill).
    ONCE.call_once(|| unsafe { std::env::set_var("WEFT_TEST_FILL_DELAY_MS", DELAY_MS.to_string()) });
}

fn launch(n: u64, live: bool) -> String {
    format!(
        "videotestsrc is-live={live} num-buffers={n} pattern=ball \
         ! video/x-raw,format=I420,width=64,height=48,framerate=25/1 \
         ! weftinfill name=w scene-threshold=1.0 ! fakesink name=sink sync={live} max-lateness=-1"
    )
}

/// Two frames of every six dropped: each fill of two frames takes more than
/// 300 ms, the holes come every 240 ms, so generation cannot keep up.
fn two_in_six(i: u64) -> bool {
    i % 6 == 3 || i % 6 == 4
}

fn count(fills: &[gst::Structure], method: &str, reason: &str) -> usize {
    fills
        .iter()
        .filter(|f| f.get::<&str>("method").unwrap() == method && f.get::<&str>("reason").unwrap() == reason)
        .count()
}

#[test]
fn live_holes_that_cannot_be_filled_in_time_are_held() {
    slow_generation();
    let n = 90;
    let rig = Rig::new(&launch(n, true), two_in_six, 0);
    rig.pipeline.set_state(gst::State::Playing).unwrap();
    let fills = rig.wait_eos(STALL);
    // The element's answer while the pipeline still runs.
    let w = rig.element();
    let mut q = gst::query::Latency::new();
    assert!(w.static_pad("src").unwrap().query(&mut q));
    let (live, min, _) = q.result();
    let mut up = gst::query::Latency::new();
    assert!(w.static_pad("sink").unwrap().peer_query(&mut up));
    rig.pipeline.set_state(gst::State::Null).unwrap();

    let rec = rig.record.lock().unwrap();
    let dur = gst::ClockTime::from_mseconds(40);
    check_complete(&rec, n, dur);
    let late = count(&fills, "hold", "late");
    let generated = fills.iter().filter(|f| f.get::<&str>("reason").unwrap() == "gap").count();
    assert!(late >= 1, "no hole held as late: {fills:?}");
    assert!(generated >= 1, "no hole generated: {fills:?}");
    assert_eq!(late + generated, 15, "one fill per hole: {fills:?}");
    for f in fills.iter().filter(|f| f.get::<&str>("reason").unwrap() == "late") {
        assert_eq!(f.get::<u32>("count").unwrap(), 2);
        assert_eq!(f.get::<u64>("frame-duration").unwrap(), dur.nseconds());
        assert!(f.get::<f64>("seconds").is_ok());
        // The held frames repeat the original before the hole.
        let start = gst::ClockTime::from_nseconds(f.get::<u64>("start").unwrap());
        let before = rec.inputs[&(start - dur).nseconds()];
        for k in 0..2u64 {
            let o = rec.out.iter().find(|o| o.pts == start + dur * k).unwrap();
            assert_eq!(o.method.as_deref(), Some("hold"));
            assert_eq!(o.hash, before);
        }
    }
    // LATENCY: upstream's, one frame of context, and at least the slowest
    // fill (two frames, each DELAY_MS more).
    let (up_live, up_min, _) = up.result();
    assert!(live && up_live);
    assert!(
        min >= up_min + dur + gst::ClockTime::from_mseconds(2 * DELAY_MS),
        "latency {min} does not include the generation time (upstream {up_min})"
    );
}

/// Not live: nothing is ever late, every hole is generated however slow,
/// and the LATENCY answer is upstream's plus the one frame of context.
#[test]
fn without_a_live_source_every_hole_is_generated() {
    slow_generation();
    let n = 30;
    let rig = Rig::new(&launch(n, false), two_in_six, 0);
    rig.pipeline.set_state(gst::State::Playing).unwrap();
    let fills = rig.wait_eos(STALL);
    let mut q = gst::query::Latency::new();
    assert!(rig.element().static_pad("src").unwrap().query(&mut q));
    let mut up = gst::query::Latency::new();
    assert!(rig.element().static_pad("sink").unwrap().peer_query(&mut up));
    rig.pipeline.set_state(gst::State::Null).unwrap();
    let rec = rig.record.lock().unwrap();
    let dur = gst::ClockTime::from_mseconds(40);
    check_complete(&rec, n, dur);
    assert_eq!(count(&fills, "hold", "late"), 0, "{fills:?}");
    assert_eq!(fills.len(), 5, "{fills:?}");
    assert!(rec.out.iter().all(|o| o.method.as_deref() != Some("hold")));
    let (live, min, _) = q.result();
    assert!(!live);
    let (_, up_min, _) = up.result();
    assert_eq!(min, up_min + dur, "upstream's and one frame of context, no generation allowance");
}
