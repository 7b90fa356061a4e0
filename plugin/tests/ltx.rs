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
        for p in ["prompt", "negative-prompt", "guidance", "gen-size", "text-encoder"] {
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
        for (p, v) in [("prompt", "a red fox"), ("negative-prompt", "blurry"), ("guidance", "3"), ("gen-size", "256"), ("text-encoder", "/t5"), ("ltx-preset", "distilled")] {
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
