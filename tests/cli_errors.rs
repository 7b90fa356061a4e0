//! Every error of the video commands: a one-line message naming the problem,
//! a non-zero exit, and no output file (nor temporary file) left behind.

#[path = "cli_support.rs"]
mod support;

use std::path::Path;

use support::*;

fn m() -> String {
    model().to_string_lossy().into_owned()
}

/// Runs `weft infill IN -o DIR/out.mp4 extra..` expecting `needle`.
fn infill_fails(dir: &Path, input: &Path, extra: &[&str], needle: &str) {
    let out = dir.join("out.mp4");
    fails(weft().arg("infill").arg(input).arg("-o").arg(&out).args(["--steps", "1", "--model", &m()]).args(extra), needle);
    assert_no_output(dir, "out.mp4");
}

#[test]
fn unreadable_inputs() {
    let d = tempfile::tempdir().unwrap();
    infill_fails(d.path(), &d.path().join("missing.mp4"), &[], "missing.mp4: cannot read");
    let junk = d.path().join("junk.mp4");
    std::fs::write(&junk, (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect::<Vec<_>>()).unwrap();
    infill_fails(d.path(), &junk, &[], "junk.mp4: cannot open: invalid data");
    infill_fails(d.path(), d.path(), &[], "is a directory");
    let empty = d.path().join("empty.mkv");
    std::fs::write(&empty, b"").unwrap();
    infill_fails(d.path(), &empty, &[], "empty.mkv: cannot open");
    // The input is checked before the model is loaded: a bad input with a
    // bad model names the input, for every command.
    let nomodel = d.path().join("no-model");
    let nm = nomodel.to_str().unwrap();
    for cmd in [&["infill"][..], &["infill", "--fps", "50"], &["extend", "--frames", "2"], &["animate", "--frames", "2"]] {
        fails(weft().arg(cmd[0]).arg(&empty).arg("-o").arg(d.path().join("out.mp4")).args(&cmd[1..]).args(["--model", nm]), "empty.mkv: cannot open");
        assert_no_output(d.path(), "out.mp4");
    }
}

#[test]
fn truncated_input() {
    let d = tempfile::tempdir().unwrap();
    // moov first (faststart), then cut the media data in half.
    let full = d.path().join("full.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-frames:v", "100", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", full.to_str().unwrap()]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = d.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    infill_fails(d.path(), &cut, &[], "cut.mp4: truncated");
    fails(weft().arg("gaps").arg(&cut), "truncated");
    // Without faststart the index is lost with the end of the file.
    let plain = d.path().join("plain.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-frames:v", "100", "-c:v", "libx264", "-preset", "ultrafast", plain.to_str().unwrap()]);
    let bytes = std::fs::read(&plain).unwrap();
    let cut2 = d.path().join("cut2.mp4");
    std::fs::write(&cut2, &bytes[..bytes.len() / 2]).unwrap();
    infill_fails(d.path(), &cut2, &[], "cut2.mp4: cannot open");
}

#[test]
fn no_video_stream_and_zero_frames() {
    let d = tempfile::tempdir().unwrap();
    let wav = d.path().join("a.wav");
    ffmpeg(&["-f", "lavfi", "-i", "sine", "-t", "0.5", wav.to_str().unwrap()]);
    infill_fails(d.path(), &wav, &[], "a.wav: no video stream");
    fails(weft().arg("gaps").arg(&wav), "no video stream");
    // A video stream whose every packet was dropped.
    let zero = d.path().join("zero.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-f", "lavfi", "-i", "sine", "-t", "1", "-c:v", "libx264", "-bsf:v", "noise=dropamount=1", zero.to_str().unwrap()]);
    infill_fails(d.path(), &zero, &[], "zero.mkv: the video stream has no frames");
    fails(weft().arg("extend").arg(&zero).arg("-o").arg(d.path().join("out.mp4")).args(["--frames", "2", "--model", &m()]), "no frames");
    assert_no_output(d.path(), "out.mp4");
}

#[test]
fn unwritable_or_existing_output() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "96x64", 8, &[], "ffv1", false);
    fails(weft().arg("infill").arg(&c).arg("-o").arg(d.path().join("no/such/dir/out.mp4")).args(["--model", &m()]), "does not exist");
    // The parent is a file.
    fails(weft().arg("infill").arg(&c).arg("-o").arg(c.join("out.mp4")).args(["--model", &m()]), "does not exist");
    // An existing output is refused and left as it was, then replaced with --overwrite.
    let out = d.path().join("out.mkv");
    std::fs::write(&out, b"precious").unwrap();
    fails(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--model", &m()]), "already exists (use --overwrite");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    ok(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--codec", "ffv1", "--overwrite", "-q", "--model", &m()]));
    assert_eq!(video_md5s(&out), video_md5s(&c));
    // The output a directory.
    fails(weft().arg("infill").arg(&c).arg("-o").arg(d.path()).args(["--overwrite", "--model", &m()]), "is a directory");
}

#[test]
fn bad_arguments() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "96x64", 8, &[], "ffv1", false);
    let dir = d.path();
    infill_fails(dir, &c, &["--range", "nonsense"], "range `nonsense`");
    infill_fails(dir, &c, &["--range", "5..2"], "range ends (frame 2) before it starts (frame 5)");
    infill_fails(dir, &c, &["--range", "3..3"], "range selects no frame");
    // Outside the clip: the error names the clip's frame span.
    infill_fails(dir, &c, &["--range", "900..1000"], "--range selects frames 900..999 but the clip has frames 0..=");
    infill_fails(dir, &c, &["--range", "40s..50s"], "but the clip has frames 0..=");
    infill_fails(dir, &c, &["--scene-threshold", "2"], "scene threshold must be in 0..=1");
    infill_fails(dir, &c, &["--max-gap", "0"], "--max-gap must be at least 1");
    infill_fails(dir, &c, &["--codec", "nosuchcodec"], "--codec nosuchcodec: no such video encoder");
    infill_fails(dir, &c, &["--codec", "ffv1"], "cannot hold ffv1 video");
    infill_fails(dir, &c, &["--device", "gpu7"], "device `gpu7`");
    infill_fails(dir, &c, &["--range", "1..2", "--dups"], "cannot be used with");
    let odd = dir.join("out.xyz");
    fails(weft().arg("infill").arg(&c).arg("-o").arg(&odd).args(["--model", &m()]), "unknown container extension .xyz");
    assert_no_output(dir, "out.xyz");
    let ext = |args: &[&str], needle: &str| {
        fails(weft().arg("extend").arg(&c).arg("-o").arg(dir.join("out.mp4")).args(["--model", &m()]).args(args), needle);
        assert_no_output(dir, "out.mp4");
    };
    ext(&["--frames", "0"], "--frames must be at least 1");
    ext(&["--frames", "2", "--seconds", "1"], "cannot be used with");
    ext(&[], "required");
    ext(&["--seconds=-1"], "--seconds must be positive");
    ext(&["--frames", "100000000000"], "more than one run writes");
    ext(&["--seconds", "1e300"], "more than one run writes");
    fails(
        weft().arg("animate").arg(&c).arg("-o").arg(dir.join("out.mp4")).args(["--frames", "3", "--fps", "0", "--model", &m()]),
        "frame rate",
    );
    assert_no_output(dir, "out.mp4");
    fails(
        weft().arg("animate").arg(&c).arg("-o").arg(dir.join("out.mp4")).args(["--frames", "3", "--fps", "zero", "--model", &m()]),
        "frame rate `zero`",
    );
    fails(weft().arg("animate").arg(&c).arg("-o").arg(dir.join("out.mp4")).args(["--frames", "3", "--steps", "0", "--model", &m()]), "steps");
    assert_no_output(dir, "out.mp4");
}

#[test]
fn missing_model_is_named() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "96x64", 8, &[], "ffv1", false);
    let out = d.path().join("out.mp4");
    fails(weft().arg("infill").arg(&c).arg("-o").arg(&out).args(["--model", d.path().join("nomodel").to_str().unwrap()]), "nomodel");
    assert_no_output(d.path(), "out.mp4");
}

/// `weft gaps IN | head -1`: the reader stops early; weft stops quietly, no
/// panic message on a closed pipe.
#[test]
fn a_closed_output_pipe_is_no_panic() {
    let d = tempfile::tempdir().unwrap();
    let c = clip(d.path(), "in.mkv", "32x24", 30, &[3, 7, 11, 15, 19, 23], "ffv1", false);
    let mut child = weft()
        .arg("gaps")
        .arg(&c)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before weft prints
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}
