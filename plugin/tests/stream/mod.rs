//! Whole pipelines around weftinfill for the soak, load and live tests:
//! `videotestsrc` frames (their offsets are frame numbers) with chosen
//! frames dropped in front of the element, every output buffer recorded
//! (time, how it was made, a hash of its bytes), the `weft-fill` messages,
//! and the process's resident memory and threads.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub use super::util::init;

/// Resident memory of this process (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Threads of this process (/proc/self/task).
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
}

/// Whether frame `i` of `n` is dropped: about one in 20, spread
/// pseudo-randomly (runs of two and three happen), never the first or the
/// last two (so every hole has frames on both sides).
pub fn dropped(i: u64, n: u64, seed: u64) -> bool {
    let h = (i ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    i > 0 && i + 2 < n && (h >> 40).is_multiple_of(20)
}

pub fn hash(b: &gst::BufferRef) -> u64 {
    let m = b.map_readable().expect("readable buffer");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.as_slice().hash(&mut h);
    h.finish()
}

/// One output buffer.
#[derive(Clone, Debug)]
pub struct Out {
    pub pts: gst::ClockTime,
    /// `method` of its WeftGeneratedMeta (`generate`, `hold`); `None` for an original.
    pub method: Option<String>,
    pub hash: u64,
}

#[derive(Default)]
pub struct Record {
    /// Hash of every original that reached weftinfill, by PTS.
    pub inputs: HashMap<u64, u64>,
    pub dropped: usize,
    pub out: Vec<Out>,
    /// Resident memory (KiB), sampled every `sample_every` output buffers.
    pub rss: Vec<u64>,
}

/// A weftinfill pipeline: `launch` must name the element `w` and end in a
/// fakesink named `sink`. Frames for which `drop(offset)` holds are
/// dropped in front of `w`.
pub struct Rig {
    pub pipeline: gst::Pipeline,
    pub record: Arc<Mutex<Record>>,
}

impl Rig {
    pub fn new(launch: &str, drop: impl Fn(u64) -> bool + Send + Sync + 'static, sample_every: usize) -> Self {
        init();
        let pipeline = gst::parse::launch(launch).expect("launch line").downcast::<gst::Pipeline>().expect("pipeline");
        let record = Arc::new(Mutex::new(Record::default()));
        let w = pipeline.by_name("w").expect("element named w");
        let r = record.clone();
        w.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(b) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let mut rec = r.lock().unwrap();
            if drop(b.offset()) {
                rec.dropped += 1;
                // Consumed here (Drop trips a CRITICAL through these bindings).
                return gst::PadProbeReturn::Handled;
            }
            let h = hash(b);
            rec.inputs.insert(b.pts().unwrap().nseconds(), h);
            gst::PadProbeReturn::Ok
        });
        let sink = pipeline.by_name("sink").expect("fakesink named sink");
        sink.set_property("signal-handoffs", true);
        let r = record.clone();
        sink.connect("handoff", false, move |args| {
            let b = args[1].get::<gst::Buffer>().unwrap();
            let method = gst::meta::CustomMeta::from_buffer(b.as_ref(), gstweft::GENERATED_META)
                .ok()
                .and_then(|m| m.structure().get::<String>("method").ok());
            let out = Out { pts: b.pts().unwrap(), method, hash: hash(b.as_ref()) };
            let mut rec = r.lock().unwrap();
            rec.out.push(out);
            if sample_every > 0 && rec.out.len() % sample_every == 0 {
                rec.rss.push(rss_kib());
            }
            None
        });
        Self { pipeline, record }
    }

    pub fn element(&self) -> gst::Element {
        self.pipeline.by_name("w").unwrap()
    }

    /// Plays until EOS; panics on an error or when nothing happens for
    /// `stall` (a deadlock). Returns the `weft-fill` messages.
    pub fn run(&self, stall: Duration) -> Vec<gst::Structure> {
        self.pipeline.set_state(gst::State::Playing).expect("to PLAYING");
        let fills = self.wait_eos(stall);
        self.pipeline.set_state(gst::State::Null).expect("to NULL");
        fills
    }

    /// Waits for EOS (see [`Rig::run`]); recalculates the latency when an
    /// element asks for it, as applications should.
    pub fn wait_eos(&self, stall: Duration) -> Vec<gst::Structure> {
        let bus = self.pipeline.bus().unwrap();
        let mut fills = Vec::new();
        let mut last = (Instant::now(), 0usize);
        loop {
            let msg = bus.timed_pop(gst::ClockTime::from_mseconds(200));
            let n = self.record.lock().unwrap().out.len();
            if n != last.1 {
                last = (Instant::now(), n);
            }
            assert!(last.0.elapsed() < stall, "pipeline stalled: no buffer for {stall:?} after {n} buffers");
            let Some(msg) = msg else { continue };
            match msg.view() {
                gst::MessageView::Eos(_) => return fills,
                gst::MessageView::Error(e) => panic!("pipeline error: {} ({:?})", e.error(), e.debug()),
                gst::MessageView::Latency(_) => {
                    let _ = self.pipeline.recalculate_latency();
                }
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure().filter(|s| s.name() == gstweft::FILL_MESSAGE) {
                        fills.push(s.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Checks a finished run of `n` frames of `dur`: a constant-rate stream of
/// all `n` frames, every original pushed byte-identical, every dropped
/// frame made by weft.
pub fn check_complete(rec: &Record, n: u64, dur: gst::ClockTime) {
    let frames: Vec<u64> = rec.out.iter().map(|o| (o.pts.nseconds() + dur.nseconds() / 2) / dur.nseconds()).collect();
    assert_eq!(frames, (0..n).collect::<Vec<_>>(), "every frame once, in order");
    let mut originals = 0;
    for o in &rec.out {
        match rec.inputs.get(&o.pts.nseconds()) {
            Some(h) => {
                assert!(o.method.is_none(), "an original at {} is marked generated", o.pts);
                assert_eq!(*h, o.hash, "original at {} changed", o.pts);
                originals += 1;
            }
            None => assert!(o.method.is_some(), "frame at {} is neither an original nor generated", o.pts),
        }
    }
    assert_eq!(originals, rec.inputs.len());
    assert_eq!(rec.out.len() - originals, rec.dropped, "one generated frame per dropped frame");
}
