//! Helpers for the `weft` command-line tests (included by the other
//! `cli_*` tests with `#[path]`; on its own it holds no test).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

/// The `weft` binary.
pub fn weft() -> Command {
    Command::cargo_bin("weft").expect("weft binary")
}

/// A tiny untrained model, written once per test run.
pub fn model() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cli-tiny-model");
    if !dir.join("model.safetensors").exists() {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let m = weft::Model::untrained(&weft::Config::tiny(), 0, &candle_core::Device::Cpu).unwrap();
        m.save(tmp.path()).unwrap();
        // Another test may have won the race: either copy is the same model.
        let _ = std::fs::rename(tmp.keep(), &dir);
    }
    dir
}

/// A file fetched by `scripts/setup`.
pub fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel);
    assert!(p.exists(), "{} is missing: run `bash scripts/setup` first (it fetches the test footage)", p.display());
    p
}

/// Runs the ffmpeg CLI; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg CLI installed");
    assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A synthetic clip: `testsrc2` at `size`, 25 fps, `n` frames, the frames
/// with numbers in `drop` removed (timestamps kept: holes in the timeline).
/// `codec`: `ffv1` or `libx264`. With `audio`, a sine track too.
pub fn clip(dir: &Path, name: &str, size: &str, n: usize, drop: &[usize], codec: &str, audio: bool) -> PathBuf {
    let out = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25");
    let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), src];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].map(String::from));
    }
    // `n` frames of the source, then the dropped ones removed.
    let mut vf = format!("trim=end_frame={n}");
    if !drop.is_empty() {
        let terms: Vec<String> = drop.iter().map(|d| format!("eq(n\\,{d})")).collect();
        vf += &format!(",select='not({})'", terms.join("+"));
    }
    args.extend(["-vf".into(), vf, "-fps_mode".into(), "passthrough".into()]);
    args.extend(["-c:v".into(), codec.into()]);
    if codec == "libx264" {
        args.extend(["-preset", "ultrafast", "-pix_fmt", "yuv420p"].map(String::from));
    }
    if audio {
        args.extend(["-c:a", "aac", "-t", &format!("{}", n as f64 / 25.0)].map(String::from));
    }
    args.push(out.to_str().unwrap().into());
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ffmpeg(&a);
    out
}

/// One decoded frame (or copied packet) per line: (pts, md5), via
/// `ffmpeg -f framemd5`. `map`: `0:v:0` or `0:a:0`; `copy`: hash packets.
pub fn framemd5(path: &Path, map: &str, copy: bool) -> Vec<(i64, String)> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i"]).arg(path).args(["-map", map]);
    if copy {
        cmd.args(["-c", "copy"]);
    }
    let out = cmd.args(["-f", "framemd5", "-"]).output().expect("ffmpeg");
    assert!(out.status.success(), "framemd5 of {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(|s| s.trim()).collect();
            (f[2].parse().unwrap(), f[5].to_string())
        })
        .collect()
}

/// MD5s of the decoded video frames, in order.
pub fn video_md5s(path: &Path) -> Vec<String> {
    framemd5(path, "0:v:0", false).into_iter().map(|x| x.1).collect()
}

/// Presentation times (seconds) of the video stream's packets, sorted.
pub fn video_times(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success());
    let mut t: Vec<f64> =
        String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(|l| l.trim_end_matches(',').parse().unwrap()).collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t
}

/// `ffprobe -show_entries` of the first stream matching `select`.
pub fn probe(path: &Path, select: &str, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", select, "-show_entries", entries, "-of", "default=nw=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs weft, expecting success; returns (stdout, stderr).
pub fn ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run weft");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "weft failed ({:?}): {se}", out.status);
    (so, se)
}

/// Runs weft, expecting failure with a one-line message containing `needle`.
pub fn fails(cmd: &mut Command, needle: &str) -> String {
    let out = cmd.output().expect("run weft");
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "weft should have failed; stderr: {se}");
    // weft's own errors are one `weft: ...` line; argument errors are clap's `error: ...` line.
    let errors: Vec<&str> =
        se.lines().filter(|l| (l.starts_with("weft: ") && !l.starts_with("weft: warning")) || l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line; stderr: {se}");
    assert!(errors[0].contains(needle), "error line {:?} lacks {needle:?}; stderr: {se}", errors[0]);
    errors[0].to_string()
}

/// No file in `dir` is named `name` or is a leftover temporary file.
pub fn assert_no_output(dir: &Path, name: &str) {
    assert!(!dir.join(name).exists(), "{name} was left behind");
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".part"), "temporary file {n} left behind");
    }
}
