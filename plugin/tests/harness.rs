//! gst-check Harness tests of weftinfill, weftextend and weftanimate with a
//! tiny untrained model (1 sampler step): what is generated, where, and that
//! originals pass through untouched.

mod util;

use gst::prelude::*;
use gst_video::VideoFormat;
use util::*;

const FPS: i32 = 25;

fn start(h: &mut gst_check::Harness, info: &gst_video::VideoInfo) {
    h.set_src_caps(info.to_caps().unwrap());
}

// ---------------------------------------------------------------------------
// weftinfill

#[test]
fn infill_no_gaps_passes_identical_buffers() {
    let (mut h, bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    start(&mut h, &info);
    let pushed: Vec<gst::Buffer> = (0..10).map(|i| frame(&info, i, 0)).collect();
    for b in &pushed {
        assert_eq!(h.push(b.clone()), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 10);
    for (o, p) in out.iter().zip(&pushed) {
        assert_eq!(o.as_ptr(), p.as_ptr(), "the very same buffer is pushed on");
        assert!(!is_generated(o));
    }
    assert!(fill_messages(&bus).is_empty());
    assert!(errors(&bus).is_empty());
}

#[test]
fn infill_gap_in_middle_is_generated() {
    let (mut h, bus) = harness("weftinfill", &[("scene-threshold", 1.0f64.to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    let idx: Vec<u64> = vec![0, 1, 2, 3, 7, 8, 9];
    let pushed: Vec<gst::Buffer> = idx.iter().map(|&i| frame(&info, i, 0)).collect();
    for b in &pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..10).collect::<Vec<_>>(), "a continuous constant-rate stream");
    let gen_idx: Vec<u64> = out.iter().enumerate().filter(|(_, b)| is_generated(b)).map(|(i, _)| i as u64).collect();
    assert_eq!(gen_idx, vec![4, 5, 6]);
    for b in &out {
        assert_eq!(b.size(), info.size());
        assert_eq!(b.duration(), Some(dur));
        if is_generated(b) {
            assert_eq!(generated_method(b).as_deref(), Some("generate"));
        }
    }
    for (i, p) in idx.iter().zip(&pushed) {
        assert_eq!(out[*i as usize].as_ptr(), p.as_ptr(), "original {i} untouched");
    }
    let msgs = fill_messages(&bus);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].get::<u64>("start").unwrap(), (dur * 4).nseconds());
    assert_eq!(msgs[0].get::<u32>("count").unwrap(), 3);
    assert_eq!(msgs[0].get::<&str>("method").unwrap(), "flow-interpolation", "the embedded interpolator made them");
}

#[test]
fn infill_gap_at_start_is_generated_backward() {
    let (mut h, _bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    for i in 3..8 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..8).collect::<Vec<_>>());
    let generated: Vec<bool> = out.iter().map(|b| is_generated(b)).collect();
    assert_eq!(generated, vec![true, true, true, false, false, false, false, false]);
}

#[test]
fn infill_gap_at_end_from_gap_event() {
    let (mut h, bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::Rgba, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    for i in 0..5 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Gap::builder(dur * 5).duration(dur * 3).build());
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..8).collect::<Vec<_>>());
    assert!(out[..5].iter().all(|b| !is_generated(b)));
    assert!(out[5..].iter().all(|b| is_generated(b)));
    let msgs = fill_messages(&bus);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].get::<&str>("reason").unwrap(), "end-gap");
}

#[test]
fn infill_gap_longer_than_max_gap_passes_through_and_is_reported() {
    let (mut h, bus) = harness("weftinfill", &[("max-gap", 2u32.to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    let idx = [0u64, 1, 2, 8, 9, 11];
    for &i in &idx {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    // 5 missing: skipped; 1 missing (10): generated.
    assert_eq!(pts_frames(&out, dur), vec![0, 1, 2, 8, 9, 10, 11]);
    assert_eq!(out.iter().filter(|b| is_generated(b)).count(), 1);
    let msgs = fill_messages(&bus);
    let methods: Vec<(u32, String)> =
        msgs.iter().map(|m| (m.get::<u32>("count").unwrap(), m.get::<String>("method").unwrap())).collect();
    assert_eq!(methods, vec![(5, "skip".to_string()), (1, "flow-interpolation".to_string())]);
}

#[test]
fn infill_eos_drains_a_fill_waiting_for_context() {
    // The fill waits for a second frame after the hole; EOS must run it.
    let (mut h, _bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::Bgrx, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    for i in [0u64, 1, 4] {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), vec![0, 1, 2, 3, 4]);
    assert_eq!(out.iter().filter(|b| is_generated(b)).count(), 2);
}

#[test]
fn infill_scene_cut_holds_the_last_frame() {
    let (mut h, bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    start(&mut h, &info);
    let before: Vec<gst::Buffer> = (0..3).map(|i| flat_frame(&info, i, 10)).collect();
    for b in &before {
        h.push(b.clone()).unwrap();
    }
    for i in 5..7 {
        h.push(flat_frame(&info, i, 240)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 7);
    for b in &out[3..5] {
        assert_eq!(generated_method(b).as_deref(), Some("hold"));
        assert_eq!(bytes(b), bytes(&before[2]), "held frame repeats the last one before the cut");
    }
    let msgs = fill_messages(&bus);
    assert_eq!(msgs[0].get::<&str>("method").unwrap(), "hold");
}

#[test]
fn infill_flush_drops_pending_data() {
    let (mut h, _bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    // 0..3, then a hole: the fill waits for a second frame after it.
    for i in [0u64, 1, 2, 6] {
        h.push(frame(&info, i, 0)).unwrap();
    }
    let first: Vec<gst::Buffer> = (0..3).map(|_| h.pull().unwrap()).collect();
    assert_eq!(pts_frames(&first, dur), vec![0, 1, 2]);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    for i in 0..3 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), vec![0, 1, 2], "the pending fill and frame 6 were dropped");
    assert!(out.iter().all(|b| !is_generated(b)));
}

#[test]
fn infill_caps_change_generates_at_the_new_size() {
    let (mut h, _bus) = harness("weftinfill", &[]);
    let a = info(VideoFormat::I420, 32, 24, FPS);
    let b = info(VideoFormat::Nv12, 48, 32, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &a);
    for i in 0..3 {
        h.push(frame(&a, i, 0)).unwrap();
    }
    h.push_event(gst::event::Caps::new(&b.to_caps().unwrap()));
    for i in [3u64, 5, 6] {
        h.push(frame(&b, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..7).collect::<Vec<_>>());
    assert!(out[..3].iter().all(|x| x.size() == a.size()));
    assert!(out[3..].iter().all(|x| x.size() == b.size()));
    assert!(is_generated(&out[4]));
    // Downstream saw the new caps.
    let mut caps_seen = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let gst::EventView::Caps(c) = ev.view() {
            caps_seen.push(c.caps_owned());
        }
    }
    assert!(caps_seen.contains(&b.to_caps().unwrap()));
}

#[test]
fn infill_every_supported_format() {
    use VideoFormat::*;
    for format in [Rgb, Rgba, Bgrx, Bgra, I420, Nv12] {
        let (mut h, bus) = harness("weftinfill", &[("scene-threshold", 1.0f64.to_value())]);
        let info = info(format, 30, 18, FPS);
        let dur = frame_dur(FPS);
        start(&mut h, &info);
        let pushed: Vec<gst::Buffer> = [0u64, 1, 3, 4].iter().map(|&i| frame(&info, i, 0)).collect();
        for p in &pushed {
            h.push(p.clone()).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_all(&mut h);
        assert_eq!(pts_frames(&out, dur), (0..5).collect::<Vec<_>>(), "{format:?}");
        assert!(is_generated(&out[2]), "{format:?}");
        assert_eq!(out[2].size(), info.size(), "{format:?}");
        for (o, p) in [&out[0], &out[1], &out[3], &out[4]].into_iter().zip(&pushed) {
            assert_eq!(o.as_ptr(), p.as_ptr(), "{format:?}");
        }
        // The generated frame maps as a valid frame of the format.
        gst_video::VideoFrameRef::from_buffer_ref_readable(out[2].as_ref(), &info).unwrap();
        assert!(errors(&bus).is_empty(), "{format:?}");
    }
}

#[test]
fn infill_answers_latency_with_one_frame_of_context() {
    let (mut h, _bus) = harness("weftinfill", &[]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    start(&mut h, &info);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(10) + frame_dur(FPS)));
}

#[test]
fn infill_same_seed_same_frames() {
    let run = || {
        let (mut h, _bus) = harness("weftinfill", &[("seed", 5u64.to_value()), ("scene-threshold", 1.0f64.to_value())]);
        let info = info(VideoFormat::Rgb, 24, 16, FPS);
        start(&mut h, &info);
        for i in [0u64, 1, 3, 4] {
            h.push(frame(&info, i, 0)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        bytes(&pull_all(&mut h)[2])
    };
    assert_eq!(run(), run());
}

fn bad_model(element: &str, path: &str) -> String {
    init();
    let pipeline = gst::Pipeline::new();
    let el = gst::ElementFactory::make(element).property("model-path", path).build().unwrap();
    pipeline.add(&el).unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err(), "{element} with model-path {path:?} must not start");
    let bus = pipeline.bus().unwrap();
    let errs = errors(&bus);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].clone()
}

#[test]
fn bad_model_path_posts_an_error_naming_it() {
    for element in ["weftinfill", "weftextend", "weftanimate"] {
        let err = bad_model(element, "/nonexistent/weft-model");
        assert!(err.contains("/nonexistent/weft-model"), "{err}");
    }
}

#[test]
fn a_model_path_to_a_weft_model_directory_is_used() {
    // The tiny untrained transformer: its estimate alone (block matching).
    let (mut h, bus) = harness("weftinfill", &[("model-path", util::tiny_model().to_str().unwrap().to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    start(&mut h, &info);
    for i in [0u64, 1, 2, 4, 5] {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 6);
    let msgs = fill_messages(&bus);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].get::<&str>("method").unwrap(), "block-matching");
}

#[test]
fn bad_device_posts_an_error() {
    init();
    let pipeline = gst::Pipeline::new();
    let el = gst::ElementFactory::make("weftinfill")
        .property("model-path", tiny_model().to_str().unwrap())
        .property("device", "tpu")
        .build()
        .unwrap();
    pipeline.add(&el).unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err());
    let errs = errors(&pipeline.bus().unwrap());
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(errs.iter().any(|e| e.contains("tpu")), "{errs:?}");
}

#[test]
fn state_changes_leave_no_task_running() {
    init();
    let el =
        gst::ElementFactory::make("weftinfill").property("model-path", tiny_model().to_str().unwrap()).build().unwrap();
    for _ in 0..3 {
        el.set_state(gst::State::Playing).unwrap();
        el.set_state(gst::State::Null).unwrap();
    }
    let src = el.static_pad("src").unwrap();
    assert_eq!(src.task_state(), gst::TaskState::Stopped);
}

// ---------------------------------------------------------------------------
// weftextend

#[test]
fn extend_forward_generates_after_the_last_frame() {
    let (mut h, bus) = harness("weftextend", &[("frames", 3u32.to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    let pushed: Vec<gst::Buffer> = (0..5).map(|i| frame(&info, i, 0)).collect();
    for p in &pushed {
        h.push(p.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..8).collect::<Vec<_>>());
    for (o, p) in out.iter().zip(&pushed) {
        assert_eq!(o.as_ptr(), p.as_ptr());
    }
    assert!(out[5..].iter().all(|b| is_generated(b)));
    let msgs = fill_messages(&bus);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].get::<&str>("reason").unwrap(), "extend-forward");
    assert_eq!(msgs[0].get::<u32>("count").unwrap(), 3);
}

#[test]
fn extend_backward_prepends_and_shifts_originals() {
    let (mut h, _bus) = harness("weftextend", &[("frames", 2u32.to_value()), ("direction", "backward".to_value())]);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    let pushed: Vec<gst::Buffer> = (0..4).map(|i| frame(&info, i, 0)).collect();
    for p in &pushed {
        h.push(p.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..6).collect::<Vec<_>>());
    assert!(is_generated(&out[0]) && is_generated(&out[1]));
    for (o, p) in out[2..].iter().zip(&pushed) {
        assert!(!is_generated(o));
        assert_eq!(bytes(o), bytes(p), "original bytes unchanged");
        assert_eq!(o.pts(), p.pts().map(|t| t + dur * 2), "original shifted by the prepended duration");
    }
}

#[test]
fn extend_both_with_duration() {
    // 100 ms at 25 fps = 3 frames (rounded up) at each end.
    let (mut h, _bus) =
        harness("weftextend", &[("duration", 100_000_000u64.to_value()), ("direction", "both".to_value())]);
    let info = info(VideoFormat::Nv12, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    for i in 0..3 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..9).collect::<Vec<_>>());
    let generated: Vec<bool> = out.iter().map(|b| is_generated(b)).collect();
    assert_eq!(generated, vec![true, true, true, false, false, false, true, true, true]);
}

#[test]
fn extend_flush_resets() {
    let (mut h, _bus) = harness("weftextend", &[("frames", 2u32.to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    let dur = frame_dur(FPS);
    start(&mut h, &info);
    for i in 0..3 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    for _ in 0..3 {
        h.pull().unwrap();
    }
    h.push_event(gst::event::FlushStart::new());
    h.push_event(gst::event::FlushStop::new(true));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    for i in 10..12 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), vec![10, 11, 12, 13]);
}

// ---------------------------------------------------------------------------
// weftanimate

#[test]
fn animate_makes_a_clip_from_a_still() {
    let (mut h, bus) =
        harness("weftanimate", &[("frames", 4u32.to_value()), ("framerate", gst::Fraction::new(10, 1).to_value())]);
    let still_info =
        gst_video::VideoInfo::builder(VideoFormat::Rgba, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    h.set_src_caps(still_info.to_caps().unwrap());
    let mut still = frame(&info(VideoFormat::Rgba, 32, 24, 10), 0, 0);
    still.make_mut().set_duration(gst::ClockTime::NONE);
    h.push(still.clone()).unwrap();
    let out = pull_all(&mut h);
    let dur = gst::ClockTime::from_mseconds(100);
    assert_eq!(pts_frames(&out, dur), vec![0, 1, 2, 3]);
    assert_eq!(bytes(&out[0]), bytes(&still), "frame 0 is the still");
    assert!(!is_generated(&out[0]));
    assert!(out[1..].iter().all(|b| is_generated(b) && b.size() == still.size()));
    let mut fps = None;
    while let Some(ev) = h.try_pull_event() {
        if let gst::EventView::Caps(c) = ev.view() {
            fps = c.caps().structure(0).unwrap().get::<gst::Fraction>("framerate").ok();
        }
    }
    assert_eq!(fps, Some(gst::Fraction::new(10, 1)));
    assert_eq!(fill_messages(&bus)[0].get::<u32>("count").unwrap(), 3);
}

#[test]
fn animate_takes_framerate_from_downstream_and_duration() {
    let (mut h, _bus) = harness("weftanimate", &[("duration", 1_000_000_000u64.to_value())]);
    h.set_sink_caps_str("video/x-raw,framerate=5/1");
    let still_info =
        gst_video::VideoInfo::builder(VideoFormat::I420, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    h.set_src_caps(still_info.to_caps().unwrap());
    h.push(frame(&info(VideoFormat::I420, 32, 24, 5), 0, 0)).unwrap();
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, gst::ClockTime::from_mseconds(200)), vec![0, 1, 2, 3, 4]);
}

#[test]
fn animate_eos_without_image_is_an_error() {
    let (mut h, bus) = harness("weftanimate", &[]);
    let still_info =
        gst_video::VideoInfo::builder(VideoFormat::I420, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    h.set_src_caps(still_info.to_caps().unwrap());
    h.push_event(gst::event::Eos::new());
    assert!(pull_all(&mut h).is_empty());
    let errs = errors(&bus);
    assert!(errs.iter().any(|e| e.contains("before an image")), "{errs:?}");
}

#[test]
fn infill_refuses_an_unsupported_format() {
    let (mut h, _bus) = harness("weftinfill", &[]);
    let gray = info(VideoFormat::Gray8, 32, 24, FPS);
    // The caps (not in the pad template) are refused, so data is not negotiated.
    h.push_event(gst::event::Caps::new(&gray.to_caps().unwrap()));
    assert_eq!(h.push(frame(&gray, 0, 0)), Err(gst::FlowError::NotNegotiated));
    let sink = h.element().unwrap().static_pad("sink").unwrap();
    assert!(!sink.query_accept_caps(&gray.to_caps().unwrap()));
    assert!(sink.query_accept_caps(&info(VideoFormat::Nv12, 32, 24, FPS).to_caps().unwrap()));
}

#[test]
fn infill_variable_rate_caps_use_the_shortest_frame_duration() {
    // framerate=0/1 (as from a VFR source): the frame before the hole lasts
    // over it, the others one frame.
    let (mut h, _bus) = harness("weftinfill", &[("scene-threshold", 1.0f64.to_value())]);
    let rated = info(VideoFormat::I420, 32, 24, FPS);
    let vfr = gst_video::VideoInfo::builder(VideoFormat::I420, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    let dur = frame_dur(FPS);
    start(&mut h, &vfr);
    for i in [0u64, 1, 2, 5, 6] {
        let mut b = frame(&rated, i, 0);
        if i == 2 {
            b.make_mut().set_duration(dur * 3);
        }
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, dur), (0..7).collect::<Vec<_>>());
    assert!(is_generated(&out[3]) && is_generated(&out[4]));
}

#[test]
fn corrupt_weights_post_an_error_at_the_first_fill() {
    // The directory looks like a model (the element starts); its weights are
    // loaded when the first frame is to be generated, and fail there.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weft-corrupt-model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny_model().join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let (mut h, bus) = harness("weftinfill", &[("model-path", dir.to_str().unwrap().to_value())]);
    let info = info(VideoFormat::I420, 32, 24, FPS);
    start(&mut h, &info);
    for i in [0u64, 1, 3, 4] {
        let _ = h.push(frame(&info, i, 0));
    }
    assert_eq!(pts_frames(&[h.pull().unwrap(), h.pull().unwrap()], frame_dur(FPS)), vec![0, 1]);
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error]).expect("an error");
    let gst::MessageView::Error(e) = msg.view() else { unreachable!() };
    assert!(e.error().to_string().contains("weft-corrupt-model"), "{}", e.error());
    // Pushing on is refused with the task's error.
    assert_eq!(h.push(frame(&info, 5, 0)), Err(gst::FlowError::Error));
}

#[test]
fn extend_and_animate_every_supported_format() {
    use VideoFormat::*;
    for format in [Rgb, Rgba, Bgrx, Bgra, I420, Nv12] {
        let (mut h, bus) = harness("weftextend", &[("frames", 2u32.to_value())]);
        let info = info(format, 30, 18, FPS);
        start(&mut h, &info);
        let pushed: Vec<gst::Buffer> = (0..3).map(|i| frame(&info, i, 0)).collect();
        for p in &pushed {
            h.push(p.clone()).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_all(&mut h);
        assert_eq!(pts_frames(&out, frame_dur(FPS)), (0..5).collect::<Vec<_>>(), "{format:?}");
        for (o, p) in out.iter().zip(&pushed) {
            assert_eq!(o.as_ptr(), p.as_ptr(), "{format:?}");
        }
        for g in &out[3..] {
            assert!(is_generated(g), "{format:?}");
            gst_video::VideoFrameRef::from_buffer_ref_readable(g.as_ref(), &info).unwrap();
        }
        assert!(errors(&bus).is_empty(), "{format:?}");

        let (mut h, bus) = harness(
            "weftanimate",
            &[("frames", 3u32.to_value()), ("framerate", gst::Fraction::new(FPS, 1).to_value())],
        );
        let still_info = gst_video::VideoInfo::builder(format, 30, 18).fps(gst::Fraction::new(0, 1)).build().unwrap();
        h.set_src_caps(still_info.to_caps().unwrap());
        let still = frame(&info, 0, 0);
        h.push(still.clone()).unwrap();
        let out = pull_all(&mut h);
        assert_eq!(out.len(), 3, "{format:?}");
        assert_eq!(bytes(&out[0]), bytes(&still), "{format:?}");
        assert!(out[1..].iter().all(|b| is_generated(b) && b.size() == info.size()), "{format:?}");
        assert!(errors(&bus).is_empty(), "{format:?}");
    }
}

#[test]
fn extend_caps_change_extends_at_the_new_size() {
    let (mut h, _bus) = harness("weftextend", &[("frames", 2u32.to_value())]);
    let a = info(VideoFormat::I420, 32, 24, FPS);
    let b = info(VideoFormat::Rgb, 40, 30, FPS);
    start(&mut h, &a);
    for i in 0..2 {
        h.push(frame(&a, i, 0)).unwrap();
    }
    h.push_event(gst::event::Caps::new(&b.to_caps().unwrap()));
    for i in 2..4 {
        h.push(frame(&b, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(pts_frames(&out, frame_dur(FPS)), (0..6).collect::<Vec<_>>());
    assert!(out[4..].iter().all(|x| is_generated(x) && x.size() == b.size()));
}

#[test]
fn extend_answers_duration_with_the_added_frames() {
    init();
    // videotestsrc knows its duration: 10 frames at 25 fps = 400 ms; + 3 + 3.
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=32,height=24,framerate=25/1 \
         ! weftextend name=x model-path={} steps=1 frames=3 direction=both ! fakesink name=sink",
        tiny_model().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Paused).unwrap();
    let _ = p.state(gst::ClockTime::from_seconds(30));
    let src = p.by_name("x").unwrap().static_pad("src").unwrap();
    let mut q = gst::query::Duration::new(gst::Format::Time);
    let answered = src.query(&mut q);
    p.set_state(gst::State::Null).unwrap();
    assert!(answered, "duration query answered");
    assert_eq!(q.result(), gst::GenericFormattedValue::from(gst::ClockTime::from_mseconds(640)));
}

#[test]
fn animate_without_a_frame_rate_downstream_is_a_negotiation_error() {
    let (mut h, bus) = harness("weftanimate", &[]);
    h.set_sink_caps_str("video/x-raw,framerate=0/1");
    let still_info =
        gst_video::VideoInfo::builder(VideoFormat::I420, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    h.set_src_caps(still_info.to_caps().unwrap());
    assert!(h.push(frame(&info(VideoFormat::I420, 32, 24, 5), 0, 0)).is_err());
    let errs = errors(&bus);
    assert!(errs.iter().any(|e| e.contains("framerate")), "{errs:?}");
}
