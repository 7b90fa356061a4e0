//! Short soak tests of weftinfill (the long ones are `scripts/soak`): a
//! stream of 2,000 frames with holes keeps its resident memory flat, and
//! NULL -> PLAYING -> NULL cycles of one pipeline leave no threads or memory
//! behind. The tests of this file share the process's memory and threads,
//! so they run one at a time.

mod util;
mod stream;

use std::sync::Mutex;
use std::time::Duration;

use gst::prelude::*;
use stream::*;

static SERIAL: Mutex<()> = Mutex::new(());

const STALL: Duration = Duration::from_secs(120);

fn launch(n: u64) -> String {
    format!(
        "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=25/1 \
         ! weftinfill name=w ! fakesink name=sink sync=false"
    )
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// 2,000 frames, about one in 20 dropped: every frame comes out, the
/// originals untouched, and the mean resident memory of the last quarter
/// of the stream is within 8 MiB of the first quarter's (a buffer of one
/// 160x120 frame leaked per fill or per frame would add 3 or 50 MiB).
#[test]
fn long_stream_keeps_memory_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 2000;
    let rig = Rig::new(&launch(n), move |i| dropped(i, n, 1), 20);
    let fills = rig.run(STALL);
    let rec = rig.record.lock().unwrap();
    check_complete(&rec, n, gst::ClockTime::from_mseconds(40));
    assert!(rec.dropped >= 60, "{} frames dropped", rec.dropped);
    assert!(fills.iter().all(|f| f.get::<&str>("method").unwrap() != "skip"), "{fills:?}");
    let q = rec.rss.len() / 4;
    let (first, last) = (mean(&rec.rss[..q]), mean(&rec.rss[rec.rss.len() - q..]));
    eprintln!("RSS first quarter {:.0} KiB, last quarter {:.0} KiB ({} samples)", first, last, rec.rss.len());
    assert!(last - first < 8.0 * 1024.0, "resident memory grew from {first:.0} KiB to {last:.0} KiB");
}

/// One pipeline taken NULL -> PLAYING -> NULL ten times, every other time
/// stopped in the middle of the stream (fills may be under way), the others
/// at EOS: afterwards the process has no more threads than after the first
/// two cycles (GLib keeps up to two idle pool threads, so two of slack;
/// a thread kept per cycle would be ten), and resident memory is within
/// 16 MiB (the model is loaded each cycle: one kept per cycle would be
/// more than 100 MiB).
#[test]
fn state_cycles_leave_no_threads_or_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 40;
    let rig = Rig::new(&launch(n), move |i| dropped(i, n, 2) || i == 5, 0);
    let cycle = |k: usize| {
        rig.record.lock().unwrap().out.clear();
        if k.is_multiple_of(2) {
            rig.run(STALL);
            assert_eq!(rig.record.lock().unwrap().out.len() as u64, n, "cycle {k}: every frame");
        } else {
            rig.pipeline.set_state(gst::State::Playing).unwrap();
            let t0 = std::time::Instant::now();
            while rig.record.lock().unwrap().out.len() < 10 {
                assert!(t0.elapsed() < STALL, "pipeline stalled in cycle {k}");
                std::thread::sleep(Duration::from_millis(5));
            }
            rig.pipeline.set_state(gst::State::Null).unwrap();
        }
        assert_eq!(rig.pipeline.state(gst::ClockTime::ZERO).1, gst::State::Null);
    };
    cycle(0);
    cycle(1);
    let (threads0, rss0) = (threads(), rss_kib());
    for k in 2..12 {
        cycle(k);
    }
    let (threads1, rss1) = (threads(), rss_kib());
    eprintln!("threads {threads0} -> {threads1}, RSS {rss0} -> {rss1} KiB");
    assert!(threads1 <= threads0 + 2, "threads left behind: {threads0} before, {threads1} after");
    assert!(rss1 < rss0 + 16 * 1024, "memory left behind: {rss0} KiB before, {rss1} KiB after");
}
