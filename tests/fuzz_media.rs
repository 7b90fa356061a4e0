//! Fuzzing the video input through the command line: small synthetic clips
//! (ffmpeg's `testsrc2` as ffv1/mkv with audio, libx264/mp4, vp8/webm, and a
//! raw H.264 elementary stream), with holes in their timelines, mutated (bit
//! flips, truncations, headers spliced from another container, huge numbers
//! written into length fields, ...) and run through the built `weft gaps` and
//! `weft infill` (a tiny weft transformer, or the embedded interpolator),
//! each run under a time limit and killed on a hang. Every run must succeed
//! (JSON for `gaps --json`, an output file for `infill`) or fail with one
//! clear `weft:` line, never crash, panic or hang, and leave no output and no
//! `.part` file behind when it fails.
//!
//! `WEFT_FUZZ_CASES` cases per target (see `tests/fuzz/mod.rs`).

mod fuzz;
#[path = "cli_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fuzz::*;
use rand::Rng;

const LIMIT: Duration = Duration::from_secs(60);

/// The seed clips, made once (shared by the targets of a run).
fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-fuzz-media-seeds-v1");
    let names = ["gaps-audio.mkv", "gap.mp4", "gap.webm", "plain.h264", "faststart.mp4"];
    if !names.iter().all(|n| dir.join(n).exists()) {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let t = tmp.path();
        support::clip(t, "gaps-audio.mkv", "48x32", 14, &[4, 5, 9], "ffv1", true);
        support::clip(t, "gap.mp4", "48x32", 12, &[6], "libx264", false);
        support::clip(t, "gap.webm", "48x32", 12, &[3], "libvpx", false);
        let o = t.join("plain.h264");
        support::ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25", "-frames:v", "10", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p", "-bsf:v", "h264_mp4toannexb", "-f", "h264", o.to_str().unwrap(),
        ]);
        let o = t.join("faststart.mp4");
        support::ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc2=size=40x24:rate=30", "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=8000",
            "-t", "0.4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags",
            "+faststart", o.to_str().unwrap(),
        ]);
        // Another run may have won the race: either copy is the same clips.
        let _ = std::fs::rename(tmp.keep(), &dir);
    }
    names.iter().map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap())).collect()
}

/// A mutated copy of one of the seeds in `dir`; returns its path and what was done.
fn mutated_input(rng: &mut Rng8, seeds: &[(String, Vec<u8>)], dir: &Path) -> (PathBuf, String) {
    let (name, bytes) = &seeds[rng.random_range(0..seeds.len())];
    let donors: Vec<&[u8]> = seeds.iter().map(|s| s.1.as_slice()).collect();
    let mut b = bytes.clone();
    let what = match rng.random_range(0..10) {
        // Header spliced from another container (or the same one).
        0 => {
            let d = donors[rng.random_range(0..donors.len())];
            let a = rng.random_range(0..d.len().min(4096));
            let c = rng.random_range(0..b.len().min(4096));
            let mut out = d[..a].to_vec();
            out.extend_from_slice(&b[c..]);
            b = out;
            format!("donor head ..{a} + own body {c}..")
        }
        // Truncated anywhere.
        1 => {
            let keep = rng.random_range(0..b.len());
            b.truncate(keep);
            format!("truncated to {keep} of {}", bytes.len())
        }
        // A few bit flips anywhere (not only near the start).
        2 => {
            let k = rng.random_range(1..=16);
            for _ in 0..k {
                let p = rng.random_range(0..b.len());
                b[p] ^= 1 << rng.random_range(0..8);
            }
            format!("{k} bit flips")
        }
        _ => mutate_bytes(rng, &mut b, &donors),
    };
    let path = dir.join(format!("in-{name}"));
    std::fs::write(&path, &b).unwrap();
    (path, format!("{name}: {what}"))
}

/// Checks a finished run: success with `ok(run)` holding, or one clear error
/// line; in both cases nothing but `allowed` files left in `dir`.
fn judge(r: &Run, dir: &Path, out: Option<&Path>, ok: impl Fn(&Run) -> Result<(), String>) -> Result<String, String> {
    let left = litter(dir);
    if !left.is_empty() {
        return Err(format!("temporary files left: {left:?} (stderr: {})", tail(&r.stderr)));
    }
    if !r.timed_out && r.status.is_some_and(|s| s.success()) {
        if r.stderr.contains("panicked") {
            return Err(format!("panic in a successful run: {}", tail(&r.stderr)));
        }
        ok(r)?;
        return Ok("ok".into());
    }
    let line = check_failed_run(r)?;
    if verbose() {
        eprintln!("  -> {line}");
    }
    if let Some(o) = out
        && o.exists()
    {
        return Err(format!("failed ({line}) but left its output {}", o.display()));
    }
    Ok(format!("error: {}", kind_of(line.trim_start_matches("weft: "))))
}

/// Case `i` of `media-gaps` under `seed`, in `dir`: (what was done, verdict).
fn gaps_case(seeds: &[(String, Vec<u8>)], dir: &Path, seed: u64, i: usize) -> (String, Result<String, String>) {
    let mut rng = case_rng("media-gaps", seed, i);
    std::fs::create_dir_all(dir).unwrap();
    let (input, what) = mutated_input(&mut rng, seeds, dir);
    let json = rng.random_bool(0.7);
    let mut cmd = weft();
    cmd.arg("gaps").arg(&input).arg("-q");
    if json {
        cmd.arg("--json");
    }
    if verbose() {
        eprintln!("[media-gaps] case {i}: {what}");
    }
    let r = run_limited(&mut cmd, LIMIT);
    let verdict = judge(&r, dir, None, |r| {
        if json {
            let v: serde_json::Value =
                serde_json::from_str(&r.stdout).map_err(|e| format!("gaps --json printed no JSON ({e}): {}", tail(&r.stdout)))?;
            if v["frames"].as_u64().is_none_or(|n| n == 0) {
                return Err(format!("gaps succeeded with no frames: {}", tail(&r.stdout)));
            }
        } else if !r.stdout.contains("fps") {
            return Err(format!("gaps printed no summary: {}", tail(&r.stdout)));
        }
        Ok(())
    });
    (what, verdict)
}

/// Case `i` of `media-infill` under `seed`, in `dir`: (what was done, verdict).
fn infill_case(seeds: &[(String, Vec<u8>)], tiny: &Path, dir: &Path, seed: u64, i: usize) -> (String, Result<String, String>) {
    let mut rng = case_rng("media-infill", seed, i);
    std::fs::create_dir_all(dir).unwrap();
    let (input, mut what) = mutated_input(&mut rng, seeds, dir);
    let out = dir.join(if rng.random_bool(0.8) { "out.mkv" } else { "out.mp4" });
    let mut cmd = weft();
    cmd.arg("infill").arg(&input).arg("-o").arg(&out).args(["-q", "--steps", "1"]);
    if out.extension().is_some_and(|e| e == "mkv") {
        cmd.args(["--codec", "ffv1"]);
    } else {
        cmd.args(["--preset", "ultrafast"]);
    }
    if rng.random_bool(0.8) {
        cmd.arg("--model").arg(tiny);
    } else {
        what += " [embedded model]";
    }
    let variant: &[&str] = match rng.random_range(0..10) {
        0 => &["--max-gap", "2"],
        1 => &["--dups"],
        2 => &["--range", "2..5"],
        3 => &["--fps", "50"],
        4 => &["--estimator", "blend"],
        _ => &[],
    };
    cmd.args(variant);
    if !variant.is_empty() {
        what += &format!(" {}", variant.join(" "));
    }
    if verbose() {
        eprintln!("[media-infill] case {i}: {what}");
    }
    let r = run_limited(&mut cmd, LIMIT);
    let verdict = judge(&r, dir, Some(&out), |_| {
        let n = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        if n == 0 {
            return Err("infill succeeded but wrote no output".into());
        }
        Ok(())
    });
    (what, verdict)
}

#[test]
fn gaps_on_damaged_videos() {
    let seeds = seeds();
    let (root, _keep) = case_root("media-gaps");
    let mut tally = Tally::new("media-gaps");
    for i in 0..cases(80) {
        if !tally.selected(i) {
            continue;
        }
        tally.run += 1;
        let dir = root.join(format!("case{i}"));
        match gaps_case(&seeds, &dir, tally.seed, i) {
            (_, Ok(k)) => tally.outcome(&k),
            (what, Err(why)) => tally.fail(i, &what, &why),
        }
        done_with(&dir);
    }
    tally.finish();
}

#[test]
fn infill_on_damaged_videos() {
    let seeds = seeds();
    let tiny = support::model();
    let (root, _keep) = case_root("media-infill");
    let mut tally = Tally::new("media-infill");
    for i in 0..cases(80) {
        if !tally.selected(i) {
            continue;
        }
        tally.run += 1;
        let dir = root.join(format!("case{i}"));
        match infill_case(&seeds, &tiny, &dir, tally.seed, i) {
            (_, Ok(k)) => tally.outcome(&k),
            (what, Err(why)) => tally.fail(i, &what, &why),
        }
        done_with(&dir);
    }
    tally.finish();
}

/// Failures the fuzzer found (and one made by hand in its spirit), kept as
/// plain cases.
mod regressions {
    use super::*;

    fn infill(input: &Path, out: &Path, extra: &[&str]) -> Run {
        let mut cmd = weft();
        cmd.arg("infill").arg(input).arg("-o").arg(out).args(["-q", "--steps", "1", "--codec", "ffv1", "--model"]);
        cmd.arg(support::model()).args(extra);
        run_limited(&mut cmd, Duration::from_secs(30))
    }

    /// The fuzz cases that failed, replayed (the same mutations of the same
    /// seed clips; with another FFmpeg the seeds, and so the cases, may differ).
    #[test]
    fn failed_fuzz_cases_replayed() {
        let seeds = seeds();
        let tiny = support::model();
        let root = tempfile::tempdir().unwrap();
        // "out.mkv: cannot write: Invalid argument" (copied audio going back
        // in time; damaged AAC parameters), "cannot open: Input/output error",
        // "cannot open: Cannot allocate memory".
        for (seed, i) in [(1592651789, 314), (1592651789, 1905), (1592651789, 13), (1592651789, 172)] {
            let (what, v) = infill_case(&seeds, &tiny, &root.path().join(format!("{seed}-{i}")), seed, i);
            assert!(v.is_ok(), "media-infill {seed}/{i} ({what}): {v:?}");
        }
        // "cannot write the header: Invalid argument" (a second, 0x0 video
        // track copied), "no decoder for the video codec RAWVIDEO: Invalid argument".
        for (seed, i) in [(20261202, 113), (20261202, 607), (20261202, 1122), (20261202, 1179)] {
            let (what, v) = infill_case(&seeds, &tiny, &root.path().join(format!("{seed}-{i}")), seed, i);
            assert!(v.is_ok(), "media-infill {seed}/{i} ({what}): {v:?}");
        }
    }

    #[test]
    fn a_frame_stamped_hours_late_is_an_error_not_hours_of_work() {
        // Was: a 20000 s jump in one timestamp made `infill` fill 500000
        // frames (and `--fps` the same), running for hours.
        let d = tempfile::tempdir().unwrap();
        let jump = d.path().join("jump.mkv");
        support::ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25", "-vf", "trim=end_frame=10,setpts=PTS+gte(N\\,8)*20000/TB",
            "-fps_mode", "passthrough", "-c:v", "ffv1", jump.to_str().unwrap(),
        ]);
        let out = d.path().join("out.mkv");
        for extra in [&[][..], &["--fps", "50"]] {
            let r = infill(&jump, &out, extra);
            let line = check_failed_run(&r).unwrap();
            assert!(line.contains("a hole of 500000 frames") && line.contains("damaged timestamp"), "{line}");
            assert!(!out.exists() && litter(d.path()).is_empty());
        }
        // Asked for, it is filled; with --max-gap below it, left.
        let r = infill(&jump, &out, &["--max-gap", "100"]);
        assert!(r.status.is_some_and(|s| s.success()), "{}", r.stderr);
        assert!(out.exists());
    }

    #[test]
    fn damaged_streams_name_the_damage_not_a_bare_library_error() {
        // Were: "cannot open: Input/output error" (a cut-off webm),
        // "out.mkv: cannot write: Invalid argument" (copied audio whose
        // timestamps go back: the input's damage blamed on the output),
        // "cannot open: Cannot allocate memory", "no decoder for the video codec None".
        let seeds = seeds();
        let d = tempfile::tempdir().unwrap();
        let webm = &seeds.iter().find(|s| s.0 == "gap.webm").unwrap().1;
        let cut = d.path().join("cut.webm");
        std::fs::write(&cut, &webm[..466.min(webm.len())]).unwrap();
        let mut cmd = weft();
        let r = run_limited(cmd.arg("gaps").arg(&cut).arg("-q"), Duration::from_secs(30));
        let line = check_failed_run(&r).unwrap();
        assert!(line.contains("cut.webm"), "{line}");
        // The mkv with audio spliced onto itself: the audio restarts at 0.
        let mkv = &seeds.iter().find(|s| s.0 == "gaps-audio.mkv").unwrap().1;
        let out = d.path().join("out.mkv");
        for head in [mkv.len() * 9 / 10, mkv.len() * 3 / 4, mkv.len() / 2] {
            let mut b = mkv[..head].to_vec();
            b.extend_from_slice(&mkv[136..]);
            let spliced = d.path().join("spliced.mkv");
            std::fs::write(&spliced, &b).unwrap();
            for extra in [&[][..], &["--dups"]] {
                let r = infill(&spliced, &out, extra);
                if r.status.is_some_and(|s| s.success()) {
                    std::fs::remove_file(&out).unwrap();
                    continue;
                }
                let line = check_failed_run(&r).unwrap_or_else(|e| panic!("head {head} {extra:?}: {e}"));
                assert!(line.contains("out.mkv: cannot copy input stream #1: its timestamps go backwards"), "{line}");
                assert!(!out.exists() && litter(d.path()).is_empty(), "{line}");
            }
        }
    }
}
