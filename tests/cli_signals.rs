//! SIGINT, SIGTERM and SIGHUP in the middle of a job: the unfinished output
//! is removed, the exit status is the shell's for the signal (130, 143,
//! 129), one line says nothing was written, and the directory is left as it
//! was.

#[path = "cli_support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Starts `cmd`, waits until its temporary output exists (the job is
/// writing), sends `signal` and returns (exit code, stderr).
fn interrupt(mut cmd: Command, dir: &Path, signal: i32, twice: bool) -> (Option<i32>, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start weft");
    let t0 = Instant::now();
    loop {
        if names(dir).iter().any(|n| n.ends_with(".part")) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "weft ended before it was interrupted");
        assert!(t0.elapsed() < Duration::from_secs(120), "weft never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "weft ended before it was interrupted");
    unsafe { libc::kill(child.id() as i32, signal) };
    if twice {
        unsafe { libc::kill(child.id() as i32, signal) };
    }
    let t1 = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(t1.elapsed() < Duration::from_secs(20), "weft did not stop within 20 s of the signal");
        std::thread::sleep(Duration::from_millis(10));
    };
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn each_signal_mid_job_leaves_the_directory_as_it_was() {
    let src = tempfile::tempdir().unwrap();
    let c = clip(src.path(), "in.mkv", "320x240", 30, &[], "ffv1", false);
    for (signal, code, name) in [(libc::SIGINT, 130, "SIGINT"), (libc::SIGTERM, 143, "SIGTERM"), (libc::SIGHUP, 129, "SIGHUP")] {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("keep.txt"), b"mine").unwrap();
        let before = names(d.path());
        // A long extension with the embedded model: running for minutes.
        let mut cmd = weft();
        cmd.arg("extend").arg(&c).arg("-o").arg(d.path().join("sig.mp4")).args(["--frames", "100000", "-q"]);
        let (status, stderr) = interrupt(cmd, d.path(), signal, false);
        assert_eq!(status, Some(code), "{name}: exit status; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line; stderr: {stderr}");
        assert!(lines[0].starts_with(&format!("weft: interrupted by {name}: ")), "{name}: {stderr}");
        assert!(lines[0].contains("nothing was written"), "{name}: {stderr}");
        assert_eq!(names(d.path()), before, "{name}: the directory changed");
        assert_eq!(std::fs::read(d.path().join("keep.txt")).unwrap(), b"mine");
    }
}

#[test]
fn an_interrupted_infill_keeps_an_existing_output_and_a_second_ctrl_c_exits_at_once() {
    let src = tempfile::tempdir().unwrap();
    let c = clip(src.path(), "in.mkv", "320x240", 30, &[], "ffv1", false);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.mp4");
    std::fs::write(&out, b"the previous render").unwrap();
    let mut cmd = weft();
    cmd.arg("extend").arg(&c).arg("-o").arg(&out).args(["--frames", "100000", "--overwrite", "-q"]);
    let (status, stderr) = interrupt(cmd, d.path(), libc::SIGINT, true);
    assert_eq!(status, Some(130), "stderr: {stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous render", "an interrupted --overwrite replaced OUT");
    assert_eq!(names(d.path()), vec!["out.mp4".to_string()]);
}
