//! Four weftinfill pipelines in one process at once, sharing one model:
//! every output complete and its originals untouched, the same input gives
//! the same frames as alone, no deadlock. (Throughput: `scripts/bench-load`.)

mod util;
mod stream;

use std::time::Duration;

use gst::prelude::*;
use stream::*;

const STALL: Duration = Duration::from_secs(180);

fn launch(n: u64, pattern: &str) -> String {
    format!(
        "videotestsrc num-buffers={n} pattern={pattern} ! video/x-raw,format=I420,width=160,height=120,framerate=25/1 \
         ! weftinfill name=w ! fakesink name=sink sync=false"
    )
}

#[test]
fn four_pipelines_share_one_model_and_all_come_out_right() {
    let n = 150;
    let patterns = ["ball", "ball", "pinwheel", "pinwheel"];
    let rigs: Vec<Rig> = patterns.iter().map(|p| Rig::new(&launch(n, p), move |i| dropped(i, n, 3), 0)).collect();
    // All four started (each has checked its model) before any plays.
    for r in &rigs {
        r.pipeline.set_state(gst::State::Paused).expect("to PAUSED");
    }
    for r in &rigs {
        let (res, cur, _) = r.pipeline.state(gst::ClockTime::from_seconds(60));
        assert!(res.is_ok() && cur == gst::State::Paused, "{res:?} {cur:?}");
    }
    assert_eq!(gstweft::common::models_in_use(), 1, "the four elements share one model");
    for r in &rigs {
        r.pipeline.set_state(gst::State::Playing).unwrap();
    }
    let fills: Vec<Vec<gst::Structure>> = std::thread::scope(|s| {
        let handles: Vec<_> = rigs.iter().map(|r| s.spawn(move || r.wait_eos(STALL))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &rigs {
        r.pipeline.set_state(gst::State::Null).unwrap();
    }
    assert_eq!(gstweft::common::models_in_use(), 0, "the model is dropped with the last element holding it");
    let dur = gst::ClockTime::from_mseconds(40);
    for (r, f) in rigs.iter().zip(&fills) {
        let rec = r.record.lock().unwrap();
        check_complete(&rec, n, dur);
        assert!(!f.is_empty() && f.iter().all(|m| m.get::<&str>("method").unwrap() != "skip"), "{f:?}");
    }
    // The same input twice at once: the same output, generated frames included.
    for pair in [(0, 1), (2, 3)] {
        let a: Vec<u64> = rigs[pair.0].record.lock().unwrap().out.iter().map(|o| o.hash).collect();
        let b: Vec<u64> = rigs[pair.1].record.lock().unwrap().out.iter().map(|o| o.hash).collect();
        assert!(a == b, "pipelines {pair:?} ran the same input to different frames");
    }
}
