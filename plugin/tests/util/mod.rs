//! Helpers shared by the plugin's tests: the plugin registered in-process, a
//! tiny untrained model on disk, harnesses and synthetic frames.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use gst::prelude::*;
use gst_check::Harness;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst init");
        gstweft::plugin_register_static().expect("register the weft plugin");
    });
}

/// A tiny untrained model written once under cargo's per-target temp dir.
pub fn tiny_model() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weft-tiny-model");
        let model = weft::Model::untrained(&weft::Config::tiny(), 7, &candle_core::Device::Cpu).expect("tiny model");
        model.save(&dir).expect("save tiny model");
        dir
    })
    .clone()
}

pub fn info(format: gst_video::VideoFormat, w: u32, h: u32, fps: i32) -> gst_video::VideoInfo {
    gst_video::VideoInfo::builder(format, w, h).fps(gst::Fraction::new(fps, 1)).build().expect("video info")
}

pub fn frame_dur(fps: i32) -> gst::ClockTime {
    gst::ClockTime::SECOND / fps as u64
}

/// A buffer for frame `index` (PTS = index frame durations) with content
/// depending on `index`; `level` shifts all bytes (a different scene).
pub fn frame(info: &gst_video::VideoInfo, index: u64, level: u8) -> gst::Buffer {
    let mut data = vec![0u8; info.size()];
    let mut s = (index as u32).wrapping_mul(2654435761).wrapping_add(12345);
    for (i, b) in data.iter_mut().enumerate() {
        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
        *b = level.wrapping_add(((i as u32 / 7 + index as u32 * 3) % 64) as u8).wrapping_add((s >> 28) as u8);
    }
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        let fps = info.fps();
        let dur = gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64).unwrap();
        b.set_pts(dur * index);
        b.set_duration(dur);
    }
    buf
}

/// A uniformly coloured frame (for scene cuts).
pub fn flat_frame(info: &gst_video::VideoInfo, index: u64, value: u8) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(vec![value; info.size()]);
    {
        let b = buf.get_mut().unwrap();
        let fps = info.fps();
        let dur = gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64).unwrap();
        b.set_pts(dur * index);
        b.set_duration(dur);
    }
    buf
}

/// An element with the embedded default model (no `model-path`) and its
/// own bus, in a playing harness.
pub fn harness(factory: &str, props: &[(&str, glib::Value)]) -> (Harness, gst::Bus) {
    init();
    let el = gst::ElementFactory::make(factory).build().expect("make element");
    for (k, v) in props {
        let pspec = el.find_property(k).expect("property exists");
        match v.get::<&str>() {
            // Enums and fractions as gst-launch would write them.
            Ok(s) if pspec.value_type() != glib::Type::STRING => el.set_property_from_str(k, s),
            _ => el.set_property_from_value(k, v),
        }
    }
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
    h.play();
    (h, bus)
}

/// Pulls buffers until EOS.
pub fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    let mut out = Vec::new();
    while let Some(b) = h.pull_until_eos().expect("buffer or EOS") {
        out.push(b);
    }
    out
}

pub fn is_generated(b: &gst::BufferRef) -> bool {
    gst::meta::CustomMeta::from_buffer(b, gstweft::GENERATED_META).is_ok()
}

pub fn generated_method(b: &gst::BufferRef) -> Option<String> {
    gst::meta::CustomMeta::from_buffer(b, gstweft::GENERATED_META)
        .ok()
        .and_then(|m| m.structure().get::<String>("method").ok())
}

pub fn bytes(b: &gst::BufferRef) -> Vec<u8> {
    b.map_readable().unwrap().as_slice().to_vec()
}

/// The `weft-fill` element messages posted so far.
pub fn fill_messages(bus: &gst::Bus) -> Vec<gst::Structure> {
    let mut v = Vec::new();
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Element]) {
        if let Some(s) = m.structure()
            && s.name() == gstweft::FILL_MESSAGE
        {
            v.push(s.to_owned());
        }
    }
    v
}

pub fn errors(bus: &gst::Bus) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = m.view() {
            v.push(format!("{} ({})", e.error(), e.debug().map(|d| d.to_string()).unwrap_or_default()));
        }
    }
    v
}

pub fn pts_frames(bufs: &[gst::Buffer], dur: gst::ClockTime) -> Vec<u64> {
    bufs.iter().map(|b| (b.pts().unwrap().nseconds() + dur.nseconds() / 2) / dur.nseconds()).collect()
}

/// A directory holding only the built plugin (GST_PLUGIN_PATH scans
/// recursively; target/debug holds much else).
pub fn plugin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // Tests run as target/<profile>/deps/<test>-<hash>; `cargo test`
        // links the cdylib beside them (only `cargo build` copies it up to
        // target/<profile>/, so that copy may be stale).
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let so = deps.join("libgstweft.so");
        assert!(so.exists(), "{} not built (cargo test -p gst-plugin-weft builds it)", so.display());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gst-plugin-weft");
        std::fs::create_dir_all(&dir).unwrap();
        // Atomically replace the link (another test binary may use it).
        let tmp = dir.join(format!(".libgstweft.so.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&so, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("libgstweft.so")).unwrap();
        dir
    })
    .clone()
}
