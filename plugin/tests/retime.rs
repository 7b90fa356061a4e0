//! gst-check Harness tests of weftinfill's frame-rate conversion: downstream
//! fixes another frame rate than upstream's, and the element outputs a
//! constant-rate stream at it, originals on the slots they sit on and the
//! slots between them interpolated at their own times by the embedded model.

mod util;

use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoFormat;
use util::*;

/// Output slot `j` at `fps`: its PTS, rounded to the nanosecond.
fn slot(fps: u64, j: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds((j * 1_000_000_000 * 2 + fps) / (2 * fps))
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<gst::Caps>>>;

/// Records the CAPS events the element sends downstream (a probe on its src
/// pad: the harness's own event queue is drained by `pull_until_eos`).
fn record_caps(h: &Harness) -> Seen {
    let seen = Seen::default();
    let s = seen.clone();
    let pad = h.element().unwrap().static_pad("src").unwrap();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) {
            s.lock().unwrap().push(c.caps_owned());
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

fn caps_seen(seen: &Seen) -> Vec<gst::Caps> {
    seen.lock().unwrap().clone()
}

/// A harness with downstream fixed to `out_fps` and upstream at `info`'s
/// rate, and the caps it sends downstream.
fn converting(props: &[(&str, glib::Value)], info: &gst_video::VideoInfo, out_fps: i32) -> (Harness, gst::Bus, Seen) {
    let (mut h, bus) = harness("weftinfill", props);
    let seen = record_caps(&h);
    let out = util::info(info.format(), info.width(), info.height(), out_fps);
    h.set_caps(info.to_caps().unwrap(), out.to_caps().unwrap());
    (h, bus, seen)
}

fn framerate(caps: &gst::Caps) -> gst::Fraction {
    caps.structure(0).unwrap().get::<gst::Fraction>("framerate").unwrap()
}

fn rgb(b: &gst::BufferRef, info: &gst_video::VideoInfo) -> weft::Frame {
    weft::Frame::from_rgb(info.width() as usize, info.height() as usize, bytes(b)).unwrap()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

#[test]
fn retime_25_to_50_interleaves_originals_and_interpolated_frames() {
    init();
    let (mut h, bus, seen) =
        converting(&[("scene-threshold", 1.0f64.to_value())], &info(VideoFormat::Rgb, 32, 24, 25), 50);
    let info = info(VideoFormat::Rgb, 32, 24, 25);
    let pushed: Vec<gst::Buffer> = (0..6).map(|i| frame(&info, i, 0)).collect();
    for b in &pushed {
        assert_eq!(h.push(b.clone()), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    let caps = caps_seen(&seen);
    assert_eq!(caps.len(), 1, "{caps:?}");
    assert_eq!(framerate(&caps[0]), gst::Fraction::new(50, 1));
    // 6 frames of 40 ms: 12 slots of 20 ms, the last holding frame 5.
    assert_eq!(out.len(), 12);
    let model = weft::Model::embedded().unwrap();
    let interp = model.interpolator().expect("the embedded model interpolates");
    for (j, b) in out.iter().enumerate() {
        assert_eq!(b.pts(), Some(slot(50, j as u64)), "slot {j}");
        if j % 2 == 0 {
            let p = &pushed[j / 2];
            assert_eq!(b.as_ptr(), p.as_ptr(), "slot {j} is original {} itself", j / 2);
            assert!(!is_generated(b));
            // Held by the test as well: pushed as it is, duration and all.
            assert_eq!(b.duration(), Some(frame_dur(25)));
        } else {
            assert!(is_generated(b), "slot {j}");
            assert_eq!(b.duration(), Some(frame_dur(50)), "slot {j}");
            assert_eq!(b.size(), info.size());
            if j == 11 {
                assert_eq!(generated_method(b).as_deref(), Some("hold"));
                assert_eq!(bytes(b), bytes(&pushed[5]), "the last frame held to its end");
                continue;
            }
            assert_eq!(generated_method(b).as_deref(), Some("generate"));
            let (a, c) = (&pushed[j / 2], &pushed[j / 2 + 1]);
            assert_ne!(bytes(b), bytes(a), "slot {j} differs from the frame before it");
            assert_ne!(bytes(b), bytes(c), "slot {j} differs from the frame after it");
            // Halfway between the two originals around it.
            let want = interp.interpolate(&rgb(a, &info), &rgb(c, &info), 0.5).unwrap();
            assert!(max_diff(&bytes(b), want.data()) <= 2, "slot {j} is the interpolation at t = 0.5");
        }
    }
    let msgs = fill_messages(&bus);
    let runs: Vec<(u64, u32, String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m.get::<u64>("start").unwrap(),
                m.get::<u32>("count").unwrap(),
                m.get::<String>("method").unwrap(),
                m.get::<String>("reason").unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(u64, u32, String, String)> = (0..5)
        .map(|i| (slot(50, 2 * i + 1).nseconds(), 1, "flow-interpolation".to_string(), "retime".to_string()))
        .collect();
    want.push((slot(50, 11).nseconds(), 1, "hold".into(), "retime".into()));
    assert_eq!(runs, want);
    assert!(msgs.iter().all(|m| m.get::<u64>("frame-duration").unwrap() == frame_dur(50).nseconds()));
    assert!(errors(&bus).is_empty());
}

#[test]
fn retime_sets_the_slot_duration_on_originals_it_holds_alone() {
    init();
    let (mut h, bus, _seen) = converting(&[], &info(VideoFormat::I420, 32, 24, 25), 50);
    let info = info(VideoFormat::I420, 32, 24, 25);
    // The element gets the only reference: no copy is needed to fix the duration.
    let mut ptrs = Vec::new();
    for i in 0..4 {
        let b = frame(&info, i, 0);
        ptrs.push(b.as_ptr() as usize);
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, frame_dur(50)), (0..8).collect::<Vec<_>>());
    for (j, b) in out.iter().enumerate() {
        assert_eq!(b.duration(), Some(frame_dur(50)), "slot {j}");
        assert_eq!(is_generated(b), j % 2 == 1, "slot {j}");
        if j % 2 == 0 {
            assert_eq!(b.as_ptr() as usize, ptrs[j / 2], "slot {j} is the pushed buffer");
        }
    }
    assert!(errors(&bus).is_empty());
}

#[test]
fn retime_24_to_60_keeps_the_originals_on_common_slots() {
    init();
    let info = info(VideoFormat::Rgb, 32, 24, 24);
    let (mut h, bus, seen) = converting(&[("scene-threshold", 1.0f64.to_value())], &info, 60);
    let pushed: Vec<gst::Buffer> = (0..10).map(|i| frame(&info, i, 0)).collect();
    for b in &pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(framerate(&caps_seen(&seen)[0]), gst::Fraction::new(60, 1));
    // 10 frames of 1/24 s: 25 slots of 1/60 s.
    assert_eq!(out.len(), 25);
    let model = weft::Model::embedded().unwrap();
    let interp = model.interpolator().unwrap();
    for (j, b) in out.iter().enumerate() {
        let j = j as u64;
        let pts = b.pts().unwrap();
        if j.is_multiple_of(5) {
            // Every 2nd input frame lands on every 5th slot (its own PTS,
            // a few ns off the rounded slot time).
            let p = &pushed[(j / 5 * 2) as usize];
            assert_eq!(b.as_ptr(), p.as_ptr(), "slot {j}");
            assert_eq!(pts, p.pts().unwrap());
            assert!(pts.nseconds().abs_diff(slot(60, j).nseconds()) < 100, "slot {j}");
            continue;
        }
        assert!(is_generated(b), "slot {j}");
        assert_eq!(pts, slot(60, j), "slot {j}");
        assert_eq!(b.duration(), Some(slot(60, j + 1) - slot(60, j)), "slot {j}");
        if j >= 23 {
            // After the last original (frame 9 at 22.5 slots), up to its end.
            assert_eq!(generated_method(b).as_deref(), Some("hold"), "slot {j}");
            assert_eq!(bytes(b), bytes(&pushed[9]));
            continue;
        }
        // Between input frames i and i + 1 at t = 2.5 j - i... in ticks:
        // slot j at 2j, frame i at 5i.
        let i = (2 * j / 5) as usize;
        let t = (2 * j - 5 * i as u64) as f32 / 5.0;
        let (a, c) = (&pushed[i], &pushed[i + 1]);
        assert_ne!(bytes(b), bytes(a), "slot {j}");
        assert_ne!(bytes(b), bytes(c), "slot {j}");
        let want = interp.interpolate(&rgb(a, &info), &rgb(c, &info), t).unwrap();
        assert!(max_diff(&bytes(b), want.data()) <= 2, "slot {j} is the interpolation at t = {t}");
    }
    // The odd input frames fall between slots: context only.
    for p in pushed.iter().skip(1).step_by(2) {
        assert!(out.iter().all(|b| b.as_ptr() != p.as_ptr()));
    }
    assert!(errors(&bus).is_empty());
}

#[test]
fn retime_fills_a_hole_on_the_way() {
    init();
    let info = info(VideoFormat::Rgb, 32, 24, 25);
    let (mut h, bus, _seen) = converting(&[("scene-threshold", 1.0f64.to_value())], &info, 50);
    let idx = [0u64, 1, 2, 5, 6, 7];
    let pushed: Vec<gst::Buffer> = idx.iter().map(|&i| frame(&info, i, 0)).collect();
    for b in &pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, frame_dur(50)), (0..16).collect::<Vec<_>>(), "constant rate through the hole");
    for (i, p) in idx.iter().zip(&pushed) {
        assert_eq!(out[2 * *i as usize].as_ptr(), p.as_ptr(), "original {i}");
    }
    let generated: Vec<usize> = (0..16).filter(|&j| is_generated(&out[j])).collect();
    assert_eq!(generated, vec![1, 3, 5, 6, 7, 8, 9, 11, 13, 15]);
    // Slots 5..=9 lie between frames 2 and 5: 1/6 .. 5/6 of the way.
    let model = weft::Model::embedded().unwrap();
    let interp = model.interpolator().unwrap();
    let (a, c) = (rgb(&pushed[2], &info), rgb(&pushed[3], &info));
    for (j, b) in out.iter().enumerate().take(10).skip(5) {
        let want = interp.interpolate(&a, &c, (j - 4) as f32 / 6.0).unwrap();
        assert!(max_diff(&bytes(b), want.data()) <= 2, "slot {j}");
    }
    let msgs = fill_messages(&bus);
    let gap: Vec<&gst::Structure> = msgs.iter().filter(|m| m.get::<&str>("reason").unwrap() == "gap").collect();
    assert_eq!(gap.len(), 1, "{msgs:?}");
    assert_eq!(gap[0].get::<u64>("start").unwrap(), slot(50, 5).nseconds());
    assert_eq!(gap[0].get::<u32>("count").unwrap(), 5);
    assert!(errors(&bus).is_empty());
}

#[test]
fn retime_holds_across_a_scene_cut() {
    init();
    let info = info(VideoFormat::Rgb, 32, 24, 25);
    let (mut h, _bus, _seen) = converting(&[], &info, 50);
    let pushed: Vec<gst::Buffer> = (0..4).map(|i| flat_frame(&info, i, if i < 2 { 10 } else { 240 })).collect();
    for b in &pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 8);
    // Slot 3 lies between frame 1 (dark) and frame 2 (bright): a cut.
    assert_eq!(generated_method(&out[3]).as_deref(), Some("hold"));
    assert_eq!(bytes(&out[3]), bytes(&pushed[1]));
}

#[test]
fn retime_50_to_25_drops_the_frames_between_slots() {
    init();
    let info = info(VideoFormat::I420, 32, 24, 50);
    let (mut h, bus, _seen) = converting(&[], &info, 25);
    let pushed: Vec<gst::Buffer> = (0..10).map(|i| frame(&info, i, 0)).collect();
    for b in &pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 5);
    for (j, b) in out.iter().enumerate() {
        assert_eq!(b.as_ptr(), pushed[2 * j].as_ptr());
    }
    assert!(fill_messages(&bus).is_empty());
}

#[test]
fn same_rate_downstream_stays_passthrough() {
    init();
    for sink in ["video/x-raw,framerate=25/1", "video/x-raw,framerate=[1/1,100/1]", "video/x-raw"] {
        let (mut h, bus) = harness("weftinfill", &[]);
        let seen = record_caps(&h);
        let info = info(VideoFormat::I420, 32, 24, 25);
        h.set_sink_caps_str(sink);
        h.set_src_caps(info.to_caps().unwrap());
        let pushed: Vec<gst::Buffer> = (0..6).map(|i| frame(&info, i, 0)).collect();
        for b in &pushed {
            h.push(b.clone()).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_all(&mut h);
        assert_eq!(out.len(), 6, "{sink}");
        for (o, p) in out.iter().zip(&pushed) {
            assert_eq!(o.as_ptr(), p.as_ptr(), "{sink}");
            assert_eq!(o.duration(), Some(frame_dur(25)), "{sink}");
        }
        assert_eq!(caps_seen(&seen), vec![info.to_caps().unwrap()], "{sink}");
        assert!(fill_messages(&bus).is_empty(), "{sink}");
        h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
        assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(10) + frame_dur(25)), "{sink}");
    }
}

#[test]
fn caps_queries_offer_any_frame_rate_after_the_same_one() {
    init();
    let (mut h, _bus) = harness("weftinfill", &[]);
    h.set_sink_caps_str("video/x-raw,format=I420,width=32,height=24,framerate=50/1");
    let el = h.element().unwrap();
    let sink = el.static_pad("sink").unwrap();
    let caps = sink.query_caps(None);
    // Downstream's rate first, then any.
    assert_eq!(caps.structure(0).unwrap().get::<gst::Fraction>("framerate").unwrap(), gst::Fraction::new(50, 1));
    let at25 = info(VideoFormat::I420, 32, 24, 25).to_caps().unwrap();
    assert!(sink.query_accept_caps(&at25));
    let nv12 = info(VideoFormat::Nv12, 32, 24, 25).to_caps().unwrap();
    assert!(!sink.query_accept_caps(&nv12), "only the frame rate may differ");
}

#[test]
fn retime_answers_latency_with_two_input_frames() {
    init();
    let info = info(VideoFormat::I420, 32, 24, 25);
    let (mut h, _bus, _seen) = converting(&[], &info, 50);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(10) + frame_dur(25) * 2));
}

#[test]
fn retime_shutdown_mid_stream_is_clean() {
    init();
    let info = info(VideoFormat::Rgb, 32, 24, 25);
    let (mut h, bus, _seen) = converting(&[], &info, 50);
    for i in 0..5 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    // Frames out while others wait for context; then stop without EOS.
    let first = h.pull().unwrap();
    assert_eq!(first.pts(), Some(gst::ClockTime::ZERO));
    let el = h.element().unwrap();
    assert_eq!(el.set_state(gst::State::Null), Ok(gst::StateChangeSuccess::Success));
    assert!(errors(&bus).is_empty(), "{:?}", errors(&bus));
}

#[test]
fn retime_negotiates_in_a_pipeline_like_videorate() {
    init();
    // Upstream fixates from the element's caps query, downstream fixes 50/1.
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=64,height=48,framerate=25/1 \
         ! weftinfill name=w ! video/x-raw,framerate=50/1 ! fakesink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let pad = sink.static_pad("sink").unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(b) = info.buffer() {
            s.lock().unwrap().push((b.pts().unwrap(), is_generated(b)));
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let caps = pad.current_caps().unwrap();
    let in_caps = pipeline.by_name("w").unwrap().static_pad("sink").unwrap().current_caps().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos));
    assert_eq!(framerate(&in_caps), gst::Fraction::new(25, 1));
    assert_eq!(framerate(&caps), gst::Fraction::new(50, 1));
    let seen = seen.lock().unwrap();
    let pts: Vec<gst::ClockTime> = seen.iter().map(|s| s.0).collect();
    assert_eq!(pts, (0..20).map(|j| slot(50, j)).collect::<Vec<_>>());
    assert!(seen.iter().enumerate().all(|(j, s)| s.1 == (j % 2 == 1)));
}

#[test]
fn retime_fills_an_end_gap_from_a_gap_event() {
    init();
    let info = info(VideoFormat::Rgb, 32, 24, 25);
    let (mut h, bus, _seen) = converting(&[("scene-threshold", 1.0f64.to_value())], &info, 50);
    for i in 0..5 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    let dur = frame_dur(25);
    h.push_event(gst::event::Gap::builder(dur * 5).duration(dur * 3).build());
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    // Up to the end of the gap (8 input frames): 16 slots.
    assert_eq!(pts_frames(&out, frame_dur(50)), (0..16).collect::<Vec<_>>());
    assert!(out[9..].iter().all(|b| is_generated(b)));
    let msgs = fill_messages(&bus);
    let end: Vec<&gst::Structure> = msgs.iter().filter(|m| m.get::<&str>("reason").unwrap() == "end-gap").collect();
    assert_eq!(end.len(), 1, "{msgs:?}");
    assert_eq!(end[0].get::<u32>("count").unwrap(), 7);
    assert_eq!(end[0].get::<u64>("start").unwrap(), slot(50, 9).nseconds());
}

#[test]
fn retime_follows_downstream_renegotiation() {
    init();
    let info = info(VideoFormat::I420, 32, 24, 25);
    let (mut h, bus, seen) = converting(&[], &info, 50);
    let pushed: Vec<gst::Buffer> = (0..8).map(|i| frame(&info, i, 0)).collect();
    for b in &pushed[..4] {
        h.push(b.clone()).unwrap();
    }
    // What is out so far (its caps first); frame 3 waits for context.
    let mut out: Vec<gst::Buffer> = (0..5).map(|_| h.pull().unwrap()).collect();
    // Downstream now takes the input's rate: passthrough from here on.
    h.set_sink_caps(info.to_caps().unwrap());
    assert!(h.push_upstream_event(gst::event::Reconfigure::new()));
    for b in &pushed[4..] {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    out.extend(pull_all(&mut h));
    let rates: Vec<gst::Fraction> = caps_seen(&seen).iter().map(framerate).collect();
    assert_eq!(rates, vec![gst::Fraction::new(50, 1), gst::Fraction::new(25, 1)]);
    // Frames 0..=3 at 50 fps (3 held to its end), then 4..8 as they are.
    let pts: Vec<u64> = out.iter().map(|b| b.pts().unwrap().mseconds()).collect();
    assert_eq!(pts, vec![0, 20, 40, 60, 80, 100, 120, 140, 160, 200, 240, 280]);
    for (o, p) in out[8..].iter().zip(&pushed[4..]) {
        assert_eq!(o.as_ptr(), p.as_ptr());
    }
    assert!(errors(&bus).is_empty());
}
