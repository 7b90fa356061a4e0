//! The LTX-Video properties of weftinfill, weftextend and weftanimate
//! (`prompt`, `negative-prompt`, `guidance`, `gen-size`, `text-encoder`, and
//! `steps` 0 = the model's default): their defaults, ERROR messages for bad
//! values, and an LTX-Video `model-path` (the tiny random fixtures laid out as
//! a diffusers snapshot) accepted and generating.

mod util;

use std::path::{Path, PathBuf};

use gst::prelude::*;
use gst_video::VideoFormat;
use util::*;

const ELEMENTS: [&str; 3] = ["weftinfill", "weftextend", "weftanimate"];
const FPS: i32 = 25;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ltx").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The tiny fixtures as an `LTXConditionPipeline` snapshot in `root` (as
/// tests/ltx_support.rs lays them out; no serde_json here), with the tiny
/// T5 when `text`.
fn tiny_snapshot(root: &Path, text: bool) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    let text_entries = if text {
        copy_dir(&fixture("t5/text_encoder"), &root.join("text_encoder"));
        copy_dir(&fixture("t5/tokenizer"), &root.join("tokenizer"));
        r#", "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"]"#
    } else {
        ""
    };
    let mi = format!(
        r#"{{"_class_name": "LTXConditionPipeline", "_diffusers_version": "0.42.1",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLLTXVideo"]{text_entries}}}"#
    );
    std::fs::write(root.join("model_index.json"), mi).unwrap();
    let t = root.join("transformer");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(fixture("transformer_config.json"), t.join("config.json")).unwrap();
    std::fs::copy(fixture("transformer.safetensors"), t.join("diffusion_pytorch_model.safetensors")).unwrap();
    let v = root.join("vae");
    std::fs::create_dir_all(&v).unwrap();
    // The tiny VAE compresses 16x in space and 4x in time (its config leaves
    // the ratios to diffusers' formula, which would say 32).
    let vcfg = std::fs::read_to_string(fixture("vae_config.json"))
        .unwrap()
        .replace(r#""spatial_compression_ratio": null"#, r#""spatial_compression_ratio": 16"#)
        .replace(r#""temporal_compression_ratio": null"#, r#""temporal_compression_ratio": 4"#);
    assert!(vcfg.contains(r#""spatial_compression_ratio": 16"#) && vcfg.contains(r#""temporal_compression_ratio": 4"#));
    std::fs::write(v.join("config.json"), vcfg).unwrap();
    std::fs::copy(fixture("vae.safetensors"), v.join("diffusion_pytorch_model.safetensors")).unwrap();
    let s = root.join("scheduler");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(
        s.join("scheduler_config.json"),
        r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": false}"#,
    )
    .unwrap();
    root.to_path_buf()
}

#[test]
fn ltx_properties_exist_with_their_defaults() {
    init();
    for name in ELEMENTS {
        let el = gst::ElementFactory::make(name).build().unwrap();
        assert_eq!(el.property::<String>("prompt"), "", "{name}");
        assert_eq!(el.property::<String>("negative-prompt"), "", "{name}");
        assert_eq!(el.property::<f64>("guidance"), 0.0, "{name}: 0 = the checkpoint's default");
        assert_eq!(el.property::<u32>("gen-size"), 512, "{name}");
        assert_eq!(el.property::<String>("text-encoder"), "", "{name}");
        assert_eq!(el.property::<u32>("steps"), 0, "{name}: 0 = the model's default");
        assert_eq!(el.property::<String>("model-path"), "", "{name}");
        assert_eq!(el.property::<f64>("condition-blur"), 0.0, "{name}: off");
        assert_eq!(el.property::<u32>("condition-crf"), 0, "{name}: off");
        for p in ["prompt", "negative-prompt", "guidance", "gen-size", "text-encoder", "condition-blur", "condition-crf"] {
            let blurb = el.find_property(p).unwrap().blurb().unwrap_or_default().to_string();
            assert!(blurb.starts_with("LTX-Video only"), "{name} {p}: {blurb}");
        }
        assert!(el.find_property("model-path").unwrap().blurb().unwrap().contains("LTX-Video"));
        assert!(el.find_property("steps").unwrap().blurb().unwrap().contains("30 for LTX-Video"));
        // Settable and read back.
        el.set_property("prompt", "a red fox");
        el.set_property("negative-prompt", "blurry");
        el.set_property("guidance", 4.5f64);
        el.set_property("gen-size", 256u32);
        el.set_property("text-encoder", "/some/t5");
        assert_eq!(el.property::<String>("prompt"), "a red fox");
        assert_eq!(el.property::<String>("negative-prompt"), "blurry");
        assert_eq!(el.property::<f64>("guidance"), 4.5);
        assert_eq!(el.property::<u32>("gen-size"), 256);
        assert_eq!(el.property::<String>("text-encoder"), "/some/t5");
    }
}

/// Sets `props` (as gst-launch would write them) on `element` and tries to
/// start it: it must refuse, with one ERROR message, returned.
fn refuses(element: &str, props: &[(&str, &str)]) -> String {
    init();
    let pipeline = gst::Pipeline::new();
    let el = gst::ElementFactory::make(element).build().unwrap();
    for (k, v) in props {
        el.set_property_from_str(k, v);
    }
    pipeline.add(&el).unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err(), "{element} with {props:?} must not start");
    let errs = errors(&pipeline.bus().unwrap());
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].clone()
}

#[test]
fn ltx_properties_with_another_model_post_an_error() {
    let tiny = tiny_model();
    let tm = tiny.to_str().unwrap();
    for element in ELEMENTS {
        for (p, v) in [("prompt", "a red fox"), ("negative-prompt", "blurry"), ("guidance", "3"), ("gen-size", "256"), ("text-encoder", "/t5"), ("ltx-preset", "distilled"), ("condition-blur", "1"), ("condition-crf", "29")] {
            let e = refuses(element, &[(p, v)]);
            assert!(e.contains(&format!("The {p} property needs a generative model (LTX-Video); the embedded interpolator")), "{e}");
            let e = refuses(element, &[("model-path", tm), (p, v)]);
            assert!(e.contains(&format!("The {p} property needs a generative model (LTX-Video); the weft model at {tm}")), "{e}");
        }
    }
    let e = refuses("weftinfill", &[("prompt", "a red fox")]);
    assert!(e.contains("the embedded interpolator cannot follow a prompt"), "{e}");
}

#[test]
fn bad_ltx_values_post_an_error() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let s = snap.to_str().unwrap();
    for element in ELEMENTS {
        for (p, v, needle) in [
            ("guidance", "0.5", "Bad guidance property: guidance must be in [1, 50] (1: off), got 0.5"),
            ("guidance", "-1", "Bad guidance property: guidance must be in [1, 50]"),
            ("guidance", "51", "Bad guidance property: guidance must be in [1, 50]"),
            ("gen-size", "16", "Bad gen-size property: generation size must be in 32..=2048 pixels, got 16"),
            ("gen-size", "4096", "Bad gen-size property: generation size must be in 32..=2048 pixels, got 4096"),
            ("ltx-preset", "fast", "Bad ltx-preset property: \"fast\" is not dev, distilled or empty"),
            ("condition-blur", "-1", "Bad condition-blur property: condition blur must be a Gaussian sigma in (0, 10]"),
            ("condition-blur", "11", "Bad condition-blur property: condition blur must be a Gaussian sigma in (0, 10]"),
            ("condition-crf", "60", "Bad condition-crf property: condition CRF must be in 1..=51 (0: off; the official inference's is 29), got 60"),
        ] {
            let e = refuses(element, &[("model-path", s), (p, v)]);
            assert!(e.contains(needle), "{element} {p}={v}: {e}");
        }
    }
}

#[test]
fn a_missing_text_encoder_posts_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let bare = tiny_snapshot(&d.path().join("bare"), false);
    let (s, b) = (snap.to_str().unwrap(), bare.to_str().unwrap());
    let e = refuses("weftinfill", &[("model-path", b), ("prompt", "a red fox")]);
    assert!(e.contains(b) && e.contains("no T5 text encoder") && e.contains("the text-encoder property"), "{e}");
    let e = refuses("weftextend", &[("model-path", s), ("text-encoder", "/nonexistent/t5")]);
    assert!(e.contains("text-encoder /nonexistent/t5: no such directory"), "{e}");
    let e = refuses("weftanimate", &[("model-path", s), ("text-encoder", d.path().to_str().unwrap())]);
    assert!(e.contains("holds neither text_encoder/ + tokenizer/ nor a T5 encoder"), "{e}");
    let e = refuses("weftinfill", &[("model-path", d.path().join("nowhere.safetensors").to_str().unwrap())]);
    assert!(e.contains("nowhere.safetensors"), "{e}");
}

/// weftinfill with an LTX-Video model-path: the gap generated by the model
/// (method `ltx-video`), the originals the very buffers pushed, same seed
/// same bytes; the bare snapshot with `text-encoder` too.
#[test]
fn an_ltx_model_path_is_accepted_and_generates() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let bare = tiny_snapshot(&d.path().join("bare"), false);
    let t5 = fixture("t5");
    let run = |props: &[(&str, glib::Value)]| -> Vec<Vec<u8>> {
        let mut all = vec![
            ("scene-threshold", 1.0f64.to_value()),
            ("prompt", "a red fox".to_value()),
            ("gen-size", 32u32.to_value()),
            ("steps", 2u32.to_value()),
        ];
        all.extend(props.iter().cloned());
        let (mut h, bus) = harness("weftinfill", &all);
        let info = info(VideoFormat::I420, 32, 24, FPS);
        h.set_src_caps(info.to_caps().unwrap());
        let idx = [0u64, 1, 2, 3, 6, 7];
        let pushed: Vec<gst::Buffer> = idx.iter().map(|&i| frame(&info, i, 0)).collect();
        for b in &pushed {
            h.push(b.clone()).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_all(&mut h);
        // (Popping one kind of message drops the others: fill messages first.)
        let msgs = fill_messages(&bus);
        assert_eq!(pts_frames(&out, frame_dur(FPS)), (0..8).collect::<Vec<_>>());
        let generated: Vec<usize> = out.iter().enumerate().filter(|(_, b)| is_generated(b)).map(|(i, _)| i).collect();
        assert_eq!(generated, vec![4, 5]);
        for (i, p) in idx.iter().zip(&pushed) {
            assert_eq!(out[*i as usize].as_ptr(), p.as_ptr(), "original {i} untouched");
        }
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].get::<&str>("method").unwrap(), "ltx-video");
        out.iter().map(|b| bytes(b)).collect()
    };
    let a = run(&[("model-path", snap.to_str().unwrap().to_value())]);
    assert_eq!(a, run(&[("model-path", snap.to_str().unwrap().to_value())]), "same seed, same bytes");
    let b = run(&[("model-path", snap.to_str().unwrap().to_value()), ("seed", 5u64.to_value())]);
    assert_ne!(a[4], b[4], "another seed, other frames");
    run(&[("model-path", bare.to_str().unwrap().to_value()), ("text-encoder", t5.to_str().unwrap().to_value())]);
}

#[test]
fn weftextend_and_weftanimate_run_an_ltx_model() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let s = snap.to_str().unwrap();
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let common = |extra: &[(&'static str, glib::Value)]| {
        let mut v = vec![("model-path", s.to_value()), ("gen-size", 32u32.to_value()), ("steps", 2u32.to_value())];
        v.extend(extra.iter().cloned());
        v
    };
    let (mut h, bus) = harness("weftextend", &common(&[("frames", 3u32.to_value())]));
    h.set_src_caps(info.to_caps().unwrap());
    for i in 0..5 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert!(errors(&bus).is_empty(), "{:?}", errors(&bus));
    assert_eq!(out.len(), 8);
    assert_eq!(out.iter().filter(|b| is_generated(b)).count(), 3);

    let (mut h, bus) = harness(
        "weftanimate",
        &common(&[
            ("frames", 5u32.to_value()),
            ("framerate", gst::Fraction::new(10, 1).to_value()),
            ("prompt", "a red fox".to_value()),
        ]),
    );
    let still_info = gst_video::VideoInfo::builder(VideoFormat::Rgb, 32, 24).fps(gst::Fraction::new(0, 1)).build().unwrap();
    h.set_src_caps(still_info.to_caps().unwrap());
    let mut still = frame(&info, 0, 0);
    still.make_mut().set_duration(gst::ClockTime::NONE);
    h.push(still.clone()).unwrap();
    let out = pull_all(&mut h);
    let msgs = fill_messages(&bus);
    assert_eq!(pts_frames(&out, gst::ClockTime::from_mseconds(100)), vec![0, 1, 2, 3, 4]);
    assert_eq!(bytes(&out[0]), bytes(&still), "frame 0 is the still");
    assert!(out[1..].iter().all(|b| is_generated(b) && b.size() == still.size()));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].get::<&str>("method").unwrap(), "ltx-video");
}

/// The frames `run_plan` generates at `slots` from `known` (plan position,
/// RGB buffer of `info`), with the LTX-Video settings the elements take from
/// the properties `gen-size` 32 and `steps` 2, at 25 fps.
fn library_frames(
    snap: &Path,
    info: &gst_video::VideoInfo,
    known: &[(i64, &gst::Buffer)],
    slots: std::ops::Range<i64>,
    seed: u64,
) -> Vec<Vec<u8>> {
    let model = weft::Model::load_ltx(snap, None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let ltx = weft::model::ltx::generate::LtxSettings {
        gen_size: 32,
        steps: 2,
        frame_rate: FPS as f64,
        ..weft::model::ltx::load::detect_preset(snap).settings()
    };
    let opts = weft::GenerateOptions { seed, ltx, ..Default::default() };
    let (w, h) = (info.width() as usize, info.height() as usize);
    assert_eq!(info.stride()[0] as usize, w * 3, "packed rows");
    let frames: Vec<(i64, weft::Frame)> =
        known.iter().map(|(p, b)| (*p, weft::Frame::from_rgb(w, h, bytes(b)).unwrap())).collect();
    let mut plan = weft::Plan::new();
    for (p, f) in &frames {
        plan = plan.known(*p, f);
    }
    for p in slots {
        plan = plan.generate(p);
    }
    let mut out = std::collections::BTreeMap::new();
    weft::run_plan(&model, &plan, &opts, |p, f| {
        out.insert(p, f.into_data());
        Ok::<(), weft::WeftError>(())
    })
    .unwrap();
    out.into_values().collect()
}

/// `n` frames of `info`, frame `i` at PTS `i` frame durations.
fn clip(info: &gst_video::VideoInfo, n: u64) -> Vec<gst::Buffer> {
    (0..n).map(|i| frame(info, i, 0)).collect()
}

/// What `element` with `props` outputs for `pushed` (caps of `info`) and
/// EOS, none of it an ERROR.
fn run_element(
    element: &str,
    props: &[(&str, glib::Value)],
    info: &gst_video::VideoInfo,
    pushed: &[gst::Buffer],
) -> Vec<gst::Buffer> {
    let (mut h, bus) = harness(element, props);
    h.set_src_caps(info.to_caps().unwrap());
    for b in pushed {
        h.push(b.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    let errs = errors(&bus);
    assert!(errs.is_empty(), "{element} {props:?}: {errs:?}");
    out
}

/// The bytes of the generated buffers of `out`, in order.
fn generated_bytes(out: &[gst::Buffer]) -> Vec<Vec<u8>> {
    out.iter().filter(|b| is_generated(b)).map(|b| bytes(b)).collect()
}

/// weftextend with an LTX-Video model holds the model's lead (17 frames:
/// a multiple of its temporal compression plus one), not weft's three: its
/// frames are those the library makes from the whole clip, both ways.
#[test]
fn weftextend_with_ltx_generates_what_the_library_does_from_the_whole_clip() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let pushed = clip(&info, 20);
    let n = 3u64;
    for direction in ["forward", "backward"] {
        let props = [
            ("model-path", snap.to_str().unwrap().to_value()),
            ("gen-size", 32u32.to_value()),
            ("steps", 2u32.to_value()),
            ("frames", (n as u32).to_value()),
            ("direction", direction.to_value()),
        ];
        let generated = generated_bytes(&run_element("weftextend", &props, &info, &pushed));
        assert_eq!(generated.len(), n as usize, "{direction}");
        // The fill's plan: generated slots 0..n, the clip on its side of them;
        // its seed is the element's plus the first slot's frame number.
        let (known, seed): (Vec<(i64, &gst::Buffer)>, u64) = if direction == "forward" {
            (pushed.iter().enumerate().map(|(i, b)| (i as i64 - 20, b)).collect(), 20)
        } else {
            (pushed.iter().enumerate().map(|(i, b)| (i as i64 + n as i64, b)).collect(), 0)
        };
        let expected = library_frames(&snap, &info, &known, 0..n as i64, seed);
        assert_eq!(generated, expected, "{direction}: the element's frames are the library's");
        // With only weft's three frames of context, LTX-Video makes other frames.
        let short: Vec<(i64, &gst::Buffer)> =
            if direction == "forward" { known[17..].to_vec() } else { known[..3].to_vec() };
        assert_ne!(library_frames(&snap, &info, &short, 0..n as i64, seed), expected, "{direction}");
    }
}

/// weftinfill with an LTX-Video model holds its 17-frame lead before a gap
/// and waits for 2 frames after it: the gap is what the library fills
/// knowing the whole clip.
#[test]
fn weftinfill_with_ltx_fills_what_the_library_does_from_the_whole_clip() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let pushed: Vec<gst::Buffer> = (0..26).filter(|i| !(20..22).contains(i)).map(|i| frame(&info, i, 0)).collect();
    let props = [
        ("model-path", snap.to_str().unwrap().to_value()),
        ("scene-threshold", 1.0f64.to_value()),
        ("gen-size", 32u32.to_value()),
        ("steps", 2u32.to_value()),
    ];
    let generated = generated_bytes(&run_element("weftinfill", &props, &info, &pushed));
    assert_eq!(generated.len(), 2);
    // Plan positions from the gap's first frame (20); seed 0 + 20.
    let pos = |b: &gst::Buffer| (b.pts().unwrap().nseconds() / frame_dur(FPS).nseconds()) as i64 - 20;
    let known: Vec<(i64, &gst::Buffer)> = pushed.iter().map(|b| (pos(b), b)).collect();
    let expected = library_frames(&snap, &info, &known, 0..2, 20);
    assert_eq!(generated, expected, "the element's frames are the library's");
    let near: Vec<(i64, &gst::Buffer)> = known.iter().copied().filter(|(p, _)| (-2..4).contains(p)).collect();
    assert_ne!(library_frames(&snap, &info, &near, 0..2, 20), expected, "two frames before the gap are not enough");
}

/// The LATENCY answers follow the model's context: weftinfill waits for one
/// frame after the hole with LTX-Video as with weft's models; a backward
/// weftextend holds the first originals until the model's lead is in (16
/// frames after the first for LTX-Video's 17, 2 for weft's 3).
#[test]
fn latency_answers_the_context_the_model_asks_for() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let up = gst::ClockTime::from_mseconds(10);
    let dur = frame_dur(FPS);
    let ltx = ("model-path", snap.to_str().unwrap().to_value());
    let backward = ("direction", "backward".to_value());
    for (element, props, frames) in [
        ("weftinfill", vec![ltx.clone()], 1),
        ("weftinfill", vec![], 1),
        ("weftextend", vec![ltx.clone(), backward.clone()], 16),
        ("weftextend", vec![backward.clone()], 2),
        ("weftextend", vec![ltx.clone()], 0),
    ] {
        let (mut h, bus) = harness(element, &props);
        h.set_src_caps(info.to_caps().unwrap());
        h.set_upstream_latency(up);
        assert_eq!(h.query_latency(), Some(up + dur * frames), "{element} {props:?}");
        assert!(errors(&bus).is_empty(), "{:?}", errors(&bus));
    }
}

/// `condition-blur` (and `condition-crf`, in a plugin built with FFmpeg)
/// change only what conditions LTX-Video: the originals are the very
/// buffers pushed, the same seed gives the same bytes, the generated frames
/// differ from those made without. Without FFmpeg, `condition-crf` is an
/// ERROR saying so.
#[test]
fn conditioning_blur_and_crf_change_the_generated_frames_only() {
    let d = tempfile::tempdir().unwrap();
    let snap = tiny_snapshot(&d.path().join("snap"), true);
    let info = info(VideoFormat::Rgb, 32, 24, FPS);
    let pushed = clip(&info, 6);
    let run = |extra: &[(&'static str, glib::Value)]| -> Vec<Vec<u8>> {
        let mut props = vec![
            ("model-path", snap.to_str().unwrap().to_value()),
            ("gen-size", 32u32.to_value()),
            ("steps", 2u32.to_value()),
            ("frames", 2u32.to_value()),
        ];
        props.extend(extra.iter().cloned());
        let out = run_element("weftextend", &props, &info, &pushed);
        assert_eq!(out.len(), 8, "{extra:?}");
        for (o, p) in out.iter().zip(&pushed) {
            assert_eq!(o.as_ptr(), p.as_ptr(), "{extra:?}: originals untouched");
        }
        out[6..].iter().map(|b| bytes(b)).collect()
    };
    let plain = run(&[]);
    let blurred = run(&[("condition-blur", 1.0f64.to_value())]);
    assert_ne!(blurred, plain);
    assert_eq!(blurred, run(&[("condition-blur", 1.0f64.to_value())]), "same seed, same bytes");
    if cfg!(feature = "ffmpeg") {
        let both = [("condition-blur", 1.0f64.to_value()), ("condition-crf", 29u32.to_value())];
        let prepared = run(&both);
        assert_ne!(prepared, plain);
        assert_ne!(prepared, blurred);
        assert_eq!(prepared, run(&both), "same seed, same bytes");
    } else {
        let e = refuses("weftextend", &[("model-path", snap.to_str().unwrap()), ("condition-crf", "29")]);
        assert!(e.contains("Bad condition-crf property: the libx264 round trip needs FFmpeg"), "{e}");
    }
}
