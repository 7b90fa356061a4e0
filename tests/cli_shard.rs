//! Sharded jobs: `weft plan`, `weft infill --plan P --shard K`, `weft join`,
//! and the Ray driver (`contrib/ray/weft_ray.py`) on a local Ray instance
//! bound to 127.0.0.1. Every sharded result must decode frame for frame
//! (video and audio) to what one run over the whole file writes.

#[path = "cli_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// 200 frames at 25 fps, 160x120: testsrc2, then (a scene cut at 100) a
/// different picture; frames in `drop` removed (timestamps kept); a sine
/// track; FFV1 in Matroska.
fn cut_clip(dir: &Path, name: &str, drop: &[usize], audio: bool) -> PathBuf {
    frozen_clip(dir, name, drop, audio, &[])
}

/// [`cut_clip`] with the frames `first..=last` of each of `freeze` replaced
/// by the frame before them (repeated frames, as `--dups` finds them).
fn frozen_clip(dir: &Path, name: &str, drop: &[usize], audio: bool, freeze: &[(usize, usize)]) -> PathBuf {
    let out = dir.join(name);
    let terms: Vec<String> = drop.iter().map(|d| format!("eq(n\\,{d})")).collect();
    let select = if drop.is_empty() { String::new() } else { format!(",select='not({})'", terms.join("+")) };
    let mut frozen = String::new();
    for (i, (first, last)) in freeze.iter().enumerate() {
        frozen += &format!(",split[f{i}a][f{i}b];[f{i}a][f{i}b]freezeframes=first={first}:last={last}:replace={}", first - 1);
    }
    let graph = format!(
        "testsrc2=size=160x120:rate=25:duration=4[a];mandelbrot=size=160x120:rate=25,trim=duration=4,format=yuv420p,setpts=PTS-STARTPTS[b];\
         [a]format=yuv420p[a2];[a2][b]concat=n=2:v=1:a=0{frozen}{select}[v]"
    );
    let mut args: Vec<String> = Vec::new();
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8"].map(String::from));
    }
    args.extend(["-filter_complex".into(), graph, "-map".into(), "[v]".into()]);
    if audio {
        args.extend(["-map", "0:a", "-c:a", "flac"].map(String::from));
    }
    args.extend(["-fps_mode", "passthrough", "-c:v", "ffv1"].map(String::from));
    args.push(out.to_str().unwrap().into());
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ffmpeg(&a);
    out
}

/// Gaps everywhere, one of them across the scene cut at 100.
const DROP: [usize; 12] = [12, 40, 41, 42, 75, 99, 100, 130, 160, 161, 185, 186];

/// The decoded frames (and audio) of `a` and `b` agree, with timestamps.
fn assert_same(a: &Path, b: &Path, audio: bool) {
    let (va, vb) = (framemd5(a, "0:v:0", false), framemd5(b, "0:v:0", false));
    assert_eq!(va.len(), vb.len(), "frame counts of {} and {}", a.display(), b.display());
    for (i, (x, y)) in va.iter().zip(&vb).enumerate() {
        assert_eq!(x, y, "frame {i} of {} differs from {}", b.display(), a.display());
    }
    if audio {
        let (aa, ab) = (framemd5(a, "0:a:0", false), framemd5(b, "0:a:0", false));
        assert!(!aa.is_empty());
        assert_eq!(aa, ab, "audio of {} differs from {}", b.display(), a.display());
    }
}

fn single_run(input: &Path, out: &Path) {
    ok(weft().arg("infill").arg(input).arg("-o").arg(out).args(["--codec", "ffv1", "-q"]));
}

fn plan(inputs: &[&Path], shards: usize, plan: &Path) -> serde_json::Value {
    plan_job(inputs, &["--shards", &shards.to_string()], plan)
}

/// `weft plan INPUTS ARGS --codec ffv1 --json -o PLAN`.
fn plan_job(inputs: &[&Path], args: &[&str], plan: &Path) -> serde_json::Value {
    let (out, _) = ok(weft().arg("plan").args(inputs).args(args).args(["--codec", "ffv1", "--json", "-q", "-o"]).arg(plan));
    serde_json::from_str(&out).unwrap()
}

fn no_part_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".part"), "temporary file {n} left in {}", dir.display());
    }
}

#[test]
fn one_shard_and_four_shards_write_what_one_run_writes() {
    let d = tempfile::tempdir().unwrap();
    let c = cut_clip(d.path(), "cut.mkv", &DROP, true);
    let single = d.path().join("single.mkv");
    single_run(&c, &single);

    for n in [1usize, 4] {
        let p = d.path().join(format!("plan{n}.json"));
        let v = plan(&[&c], n, &p);
        let shards = v["shards"].as_array().unwrap();
        assert_eq!(shards.len(), n, "{v}");
        // Cuts tile the clip and keep `margin` real frames from every gap.
        let margin = v["margin"].as_i64().unwrap();
        let mut next = 0;
        for s in shards {
            assert_eq!(s["start"].as_i64().unwrap(), next);
            next = s["end"].as_i64().unwrap();
            let cut = s["start"].as_i64().unwrap();
            if cut > 0 {
                for g in DROP.map(|g| g as i64) {
                    assert!(g < cut - margin || g >= cut + margin, "cut {cut} within {margin} frames of the missing frame {g}");
                }
            }
        }
        assert_eq!(next, 200);
        // Shards run in any order.
        for k in (0..n).rev() {
            ok(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", &k.to_string(), "-q"]));
        }
        let joined = d.path().join(format!("joined{n}.mkv"));
        ok(weft().arg("join").arg(&p).arg("-o").arg(&joined).arg("-q"));
        assert_same(&single, &joined, true);
        no_part_files(d.path());
        no_part_files(&d.path().join(format!("plan{n}.json.segments")));
    }
    // A retried shard rewrites its segment: the join is unchanged.
    let p = d.path().join("plan4.json");
    ok(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "2", "-q"]));
    let again = d.path().join("again.mkv");
    ok(weft().arg("join").arg(&p).arg("-o").arg(&again).arg("-q"));
    assert_same(&single, &again, true);
}

#[test]
fn shards_of_real_h264_footage_seek_to_keyframes_and_join_exactly() {
    // bikes-gaps.mp4: libx264 with scene cuts, frames 20-22 and 60 missing.
    let d = tempfile::tempdir().unwrap();
    let c = data("bikes-gaps.mp4");
    let single = d.path().join("single.mkv");
    single_run(&c, &single);
    let p = d.path().join("plan.json");
    let v = plan(&[&c], 3, &p);
    let starts: Vec<i64> = v["shards"].as_array().unwrap().iter().map(|s| s["start"].as_i64().unwrap()).collect();
    // The later shards start at the scene cuts 76 and 187 (each within a quarter shard of 83 and 167).
    assert_eq!(starts, vec![0, 76, 187], "{v}");
    for k in 0..3 {
        ok(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", &k.to_string(), "-q"]));
    }
    let joined = d.path().join("joined.mkv");
    ok(weft().arg("join").arg(&p).arg("-o").arg(&joined).arg("-q"));
    assert_same(&single, &joined, false);
    assert_eq!(video_md5s(&joined).len(), 250);
}

#[test]
fn shard_errors_are_one_line() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let c = clip(dir, "holes.mkv", "64x48", 60, &[10, 40], "ffv1", false);
    let p = dir.join("plan.json");
    ok(weft().arg("plan").arg(&c).args(["--shards", "2", "-q", "-o"]).arg(&p));
    fails(weft().arg("plan").arg(&c).args(["--shards", "2", "-q", "-o"]).arg(&p), "already exists");
    fails(weft().arg("plan").arg(&c).args(["--shards", "0", "-q", "-o"]).arg(dir.join("p0.json")), "--shards must be at least 1");
    fails(weft().arg("plan").arg(dir.join("nope.mkv")).args(["--shards", "2", "-o"]).arg(dir.join("p1.json")), "nope.mkv");
    fails(weft().arg("join").arg(&p).arg("-o").arg(dir.join("out.mkv")), "has no segment yet");
    assert_no_output(dir, "out.mkv");
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "7"]), "--shard 7: the plan has 2 shard(s)");
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "--range", "1..2"]), "--range 1..2 differs from the plan's job");
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "--fps", "50"]), "--fps 50 differs from the plan's job");
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "-o"]).arg(dir.join("x.mkv")), "cannot be used with");
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "--max-gap", "3"]), "cannot be used with");
    fails(weft().args(["extend"]).arg(&c).args(["--plan"]).arg(&p).args(["--shard", "0"]), "cannot be used with");
    fails(weft().args(["extend", "--plan"]).arg(&p).args(["--shard", "0", "--frames", "3"]), "run its shards with `weft infill --plan");
    fails(weft().args(["infill", "--plan"]).arg(&p), "required arguments were not provided");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"version\": 1}").unwrap();
    fails(weft().args(["infill", "--plan"]).arg(&bad).args(["--shard", "0"]), "not a weft shard plan");
    fails(
        weft().arg("plan").arg(&c).args(["--job", "extend", "--frames", "3", "--margin", "4", "-q", "-o"]).arg(dir.join("pm.json")),
        "--margin: `weft extend` plans have one shard per input file",
    );
    fails(
        weft().arg("plan").arg(&c).args(["--job", "animate", "--frames", "3", "--scene-threshold", "0.5", "-o"]).arg(dir.join("ps.json")),
        "--scene-threshold: `weft animate` plans",
    );
    // The input unreadable at the same size: the failed first shard leaves
    // no empty PLAN.segments/ behind.
    let orig = std::fs::read(&c).unwrap();
    std::fs::write(&c, vec![0u8; orig.len()]).unwrap();
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "-q"]), "holes.mkv");
    assert!(!dir.join("plan.json.segments").exists(), "a failed shard left plan.json.segments/");
    std::fs::write(&c, &orig).unwrap();
    // The input changed after the plan was made.
    let mut bytes = std::fs::read(&c).unwrap();
    bytes.extend_from_slice(&[0; 16]);
    std::fs::write(&c, bytes).unwrap();
    fails(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", "0", "-q"]), "changed since the plan was made");
    no_part_files(dir);
}

/// Repeated frames 30..=33 and 140..=141 (the one after 141 is missing).
const FREEZE: [(usize, usize); 2] = [(30, 33), (140, 141)];
/// Gaps of the frozen clip: one next to repeated frames, one across the scene cut.
const DROP2: [usize; 9] = [12, 40, 41, 75, 99, 100, 142, 160, 185];

#[test]
fn sharded_range_dups_and_fps_write_what_one_run_writes() {
    let d = tempfile::tempdir().unwrap();
    let c = frozen_clip(d.path(), "frozen.mkv", &DROP2, true, &FREEZE);
    let jobs: [(&[&str], serde_json::Value); 5] = [
        (&["--range", "50..=60"], serde_json::json!([{"start": 50, "count": 11}])),
        (&["--range", "1.5s..2.2s"], serde_json::json!([{"start": 37, "count": 3}, {"start": 42, "count": 13}])),
        (&["--dups"], serde_json::json!([{"start": 30, "count": 4}, {"start": 140, "count": 2}])),
        (&["--fps", "50"], serde_json::Value::Null),
        (&["--fps", "30"], serde_json::Value::Null),
    ];
    for (job, replaced) in jobs {
        let single = d.path().join("single.mkv");
        ok(weft().arg("infill").arg(&c).arg("-o").arg(&single).args(["--codec", "ffv1", "-q", "--overwrite"]).args(job));
        for n in [1usize, 4] {
            let p = d.path().join(format!("plan{n}.json"));
            let v = plan_job(&[&c], &[&["--shards", &n.to_string(), "--overwrite"][..], job].concat(), &p);
            assert_eq!(v["shards"].as_array().unwrap().len(), n, "{job:?}: {v}");
            // The plan found the frames the job regenerates, and cut clear of them.
            assert_eq!(v["inputs"][0].get("replaced").cloned().unwrap_or_default(), replaced, "{job:?}: {v}");
            // Shards run in any order, with the job's options repeated or not.
            for k in (0..n).rev() {
                let repeat: &[&str] = if k % 2 == 1 { job } else { &[] };
                ok(weft().args(["infill", "--plan"]).arg(&p).args(["--shard", &k.to_string(), "-q"]).args(repeat));
            }
            let joined = d.path().join(format!("joined{n}.mkv"));
            ok(weft().arg("join").arg(&p).arg("-o").arg(&joined).args(["-q", "--overwrite"]));
            assert_same(&single, &joined, true);
            no_part_files(d.path());
            no_part_files(&d.path().join(format!("plan{n}.json.segments")));
        }
    }
}

/// A single frame of `src` (a lavfi source) as a PNG.
fn still(dir: &Path, name: &str, src: &str) -> PathBuf {
    let out = dir.join(name);
    ffmpeg(&["-f", "lavfi", "-i", src, "-frames:v", "1", out.to_str().unwrap()]);
    out
}

#[test]
fn per_file_extend_and_animate_shards_write_what_one_run_writes() {
    let d = tempfile::tempdir().unwrap();
    let clips = d.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    let inputs = [
        (clip(&clips, "a.mkv", "64x48", 30, &[10], "ffv1", true), true),
        (clip(&clips, "b.mkv", "96x64", 40, &[], "ffv1", false), false),
        (clip(&clips, "c.mp4", "64x48", 25, &[], "libx264", true), true),
    ];
    for (k, job) in [&["--frames", "6"][..], &["--seconds", "0.2", "--backward"]].into_iter().enumerate() {
        let p = d.path().join(format!("extend{k}.json"));
        let v = plan_job(&[&clips], &[&["--job", "extend"][..], job].concat(), &p);
        let shards = v["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 3, "{v}");
        assert!(shards.iter().all(|s| s["frames"].as_u64() == Some(if k == 0 { 6 } else { 5 })), "{v}");
        for s in 0..3 {
            let repeat: &[&str] = if s == 1 { job } else { &[] };
            ok(weft().args(["extend", "--plan"]).arg(&p).args(["--shard", &s.to_string(), "-q"]).args(repeat));
        }
        let out = d.path().join(format!("extended{k}"));
        ok(weft().arg("join").arg(&p).arg("-o").arg(&out).arg("-q"));
        for (clip, audio) in &inputs {
            let single = d.path().join("single.mkv");
            ok(weft().arg("extend").arg(clip).arg("-o").arg(&single).args(["--codec", "ffv1", "-q", "--overwrite"]).args(job));
            let stem = clip.file_stem().unwrap().to_string_lossy();
            assert_same(&single, &out.join(format!("{stem}.mkv")), *audio);
        }
        no_part_files(&out);
        no_part_files(&d.path().join(format!("extend{k}.json.segments")));
    }

    let stills = d.path().join("stills");
    std::fs::create_dir(&stills).unwrap();
    let a = still(&stills, "a.png", "testsrc2=size=64x48");
    let b = still(&stills, "b.png", "mandelbrot=size=96x64");
    let job = ["--frames", "8", "--fps", "12"];
    let p = d.path().join("animate.json");
    assert_eq!(plan_job(&[&stills], &[&["--job", "animate"][..], &job].concat(), &p)["shards"].as_array().unwrap().len(), 2);
    for s in ["1", "0"] {
        ok(weft().args(["animate", "--plan"]).arg(&p).args(["--shard", s, "-q"]));
    }
    let out = d.path().join("animated");
    ok(weft().arg("join").arg(&p).arg("-o").arg(&out).arg("-q"));
    for img in [&a, &b] {
        let single = d.path().join("single.mkv");
        ok(weft().arg("animate").arg(img).arg("-o").arg(&single).args(["--codec", "ffv1", "-q", "--overwrite"]).args(job));
        let stem = img.file_stem().unwrap().to_string_lossy();
        assert_same(&single, &out.join(format!("{stem}.mkv")), false);
        assert_eq!(video_md5s(&single).len(), 8);
    }
    // One input: joined into the file OUT.
    let p = d.path().join("one.json");
    plan_job(&[&a], &[&["--job", "animate"][..], &job].concat(), &p);
    ok(weft().args(["animate", "--plan"]).arg(&p).args(["--shard", "0", "-q", "--fps", "12/1"]));
    // (MP4 cannot hold the plan's FFV1: refused before anything is written.)
    fails(weft().arg("join").arg(&p).arg("-o").arg(d.path().join("one.mp4")), "cannot hold the segments' ffv1 video");
    assert_no_output(d.path(), "one.mp4");
    let one = d.path().join("one.mkv");
    ok(weft().arg("join").arg(&p).arg("-o").arg(&one).arg("-q"));
    let single = d.path().join("single-a.mkv");
    ok(weft().arg("animate").arg(&a).arg("-o").arg(&single).args(["--codec", "ffv1", "-q"]).args(job));
    assert_eq!(video_md5s(&one), video_md5s(&single));
    no_part_files(d.path());
}

#[test]
fn shard_runs_with_other_options_than_the_plan_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let c = clip(dir, "holes.mkv", "64x48", 60, &[10, 40], "ffv1", false);
    let run = |cmd: &str, p: &Path, args: &[&str]| {
        let mut w = weft();
        w.args([cmd, "--plan"]).arg(p).args(["--shard", "0", "-q"]).args(args);
        w
    };
    // --range: another range (the same frames written otherwise are accepted).
    let pr = dir.join("range.json");
    plan_job(&[&c], &["--shards", "2", "--range", "20..=25"], &pr);
    fails(&mut run("infill", &pr, &["--range", "20..27"]), "--range 20..27 differs from the plan's job (`weft infill --range 20..=25`");
    fails(&mut run("infill", &pr, &["--dups"]), "--dups differs");
    fails(&mut run("infill", &pr, &["--fps", "50"]), "--fps 50 differs");
    fails(&mut run("extend", &pr, &["--frames", "2"]), "run its shards with `weft infill");
    let segs = dir.join("range.json.segments");
    assert!(!segs.exists(), "a refused shard made {}", segs.display());
    ok(&mut run("infill", &pr, &["--range", "20..26"]));
    // --dups and its tolerance.
    let pd = dir.join("dups.json");
    plan_job(&[&c], &["--shards", "2", "--dups", "--dup-tolerance", "1"], &pd);
    fails(&mut run("infill", &pd, &["--dups", "--dup-tolerance", "2"]), "--dup-tolerance 2 differs");
    fails(&mut run("infill", &pd, &["--range", "1..2"]), "--range 1..2 differs");
    // --fps.
    let pf = dir.join("fps.json");
    plan_job(&[&c], &["--shards", "2", "--fps", "50"], &pf);
    fails(&mut run("infill", &pf, &["--fps", "60"]), "--fps 60 differs from the plan's job (`weft infill --fps 50`");
    fails(&mut run("infill", &pf, &["--dups"]), "--dups differs");
    // extend: the length, its direction, the command.
    let pe = dir.join("extend.json");
    plan_job(&[&c], &["--job", "extend", "--frames", "3"], &pe);
    fails(&mut run("extend", &pe, &["--frames", "4"]), "--frames 4 differs from the plan's job (`weft extend --frames 3`");
    fails(&mut run("extend", &pe, &["--seconds", "1"]), "--seconds 1 differs");
    fails(&mut run("extend", &pe, &["--frames", "3", "--backward"]), "--backward differs");
    fails(&mut run("infill", &pe, &[]), "run its shards with `weft extend --plan");
    fails(&mut run("animate", &pe, &[]), "run its shards with `weft extend --plan");
    fails(run("extend", &pe, &["-o"]).arg(dir.join("x.mkv")), "cannot be used with");
    assert!(!dir.join("extend.json.segments").exists());
    ok(&mut run("extend", &pe, &["--seconds", "0.12"]));
    // animate: the clip's frame rate.
    let pa = dir.join("animate.json");
    plan_job(&[&c], &["--job", "animate", "--frames", "4", "--fps", "10"], &pa);
    fails(&mut run("animate", &pa, &["--fps", "12"]), "--fps 12 differs from the plan's job (`weft animate --frames 4 --fps 10`");
    fails(&mut run("animate", &pa, &["--frames", "5"]), "--frames 5 differs");
    // Plans whose options do not fit their job: nothing written.
    let x = dir.join("x.json");
    let bad_plan = |args: &[&str], needle: &str| {
        fails(weft().arg("plan").arg(&c).args(args).arg("-o").arg(&x), needle);
        assert_no_output(dir, "x.json");
        assert!(!dir.join("x.json.segments").exists());
    };
    bad_plan(&["--job", "extend"], "--job extend needs --frames N or --seconds S");
    bad_plan(&["--job", "extend", "--frames", "3", "--shards", "2"], "--shards: `weft extend` plans have one shard per input file");
    bad_plan(&["--job", "extend", "--frames", "3", "--range", "1..2"], "--range is for --job infill");
    bad_plan(&["--job", "animate", "--frames", "3", "--backward"], "--backward is for --job extend");
    bad_plan(&["--shards", "2", "--frames", "3"], "--frames is for --job extend or animate");
    bad_plan(&["--shards", "2", "--fps", "50", "--max-gap", "3"], "--max-gap cannot be used with --fps");
    bad_plan(&["--shards", "2", "--range", "100..200"], "nothing to regenerate");
    bad_plan(&["--shards", "2", "--fps", "0"], "--fps");
    bad_plan(&["--range", "1..2"], "--shards N is needed");
    no_part_files(dir);
}

// ---------------------------------------------------------------- Ray

/// The Python that has Ray: $WEFT_RAY_PYTHON, else `.venv-ray` (made by
/// scripts/setup). `None` (the test is skipped) when there is none, except
/// in CI, where it must be there.
fn ray_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::env::var_os("WEFT_RAY_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv-ray/bin/python"));
    let has_ray = Command::new(&py).args(["-c", "import ray"]).output().is_ok_and(|o| o.status.success());
    if has_ray {
        return Some(py);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {} has no Ray: scripts/setup installs it", py.display());
    eprintln!("skipped: no Ray at {} (run scripts/setup, or set WEFT_RAY_PYTHON)", py.display());
    None
}

/// Runs the Ray driver on a local Ray instance (127.0.0.1) it starts and
/// stops, killed with its process group after `limit`.
fn ray_run(py: &Path, plan: &Path, out: &Path, extra: &[&str], limit: Duration) -> String {
    use std::os::unix::process::CommandExt;
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ray/weft_ray.py");
    let log = plan.with_extension("ray.log");
    let mut child = Command::new(py)
        .arg(&driver)
        .arg(plan)
        .arg("-o")
        .arg(out)
        .args(["--weft", env!("CARGO_BIN_EXE_weft"), "--local-cpus", "2"])
        .args(extra)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("RAY_ADDRESS", "")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .process_group(0)
        .spawn()
        .expect("start the Ray driver");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("the Ray driver ran past {limit:?}: {}", std::fs::read_to_string(log.with_extension("err")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    assert!(status.success(), "Ray driver failed ({status}): {err}");
    err
}

#[test]
fn ray_runs_the_shards_and_a_killed_worker_is_retried_to_the_same_output() {
    let Some(py) = ray_python() else { return };
    let d = tempfile::tempdir().unwrap();
    let c = cut_clip(d.path(), "cut.mkv", &DROP, true);
    let single = d.path().join("single.mkv");
    single_run(&c, &single);
    let p = d.path().join("plan.json");
    assert_eq!(plan(&[&c], 4, &p)["shards"].as_array().unwrap().len(), 4);
    let out = d.path().join("ray.mkv");
    let err = ray_run(&py, &p, &out, &["--kill-mid-write", "1", "--retries", "2"], Duration::from_secs(600));
    let marker = std::fs::read_to_string(d.path().join("plan.json.killed-1")).expect("the kill hook ran");
    assert!(marker.starts_with("killed shard 1 mid-"), "{marker}");
    assert!(err.contains("4/4"), "{err}");
    assert_same(&single, &out, true);
    no_part_files(d.path());
    no_part_files(&d.path().join("plan.json.segments"));
}

#[test]
fn ray_fills_a_folder_of_three_clips() {
    let Some(py) = ray_python() else { return };
    let d = tempfile::tempdir().unwrap();
    let clips = d.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    let a = cut_clip(&clips, "a.mkv", &DROP, true);
    let b = cut_clip(&clips, "b.mkv", &[5, 6, 150], false);
    let c = clip(&clips, "c.mkv", "96x64", 50, &[20, 21, 22], "ffv1", true);
    let p = d.path().join("folder.json");
    let v = plan(&[&clips], 5, &p);
    let inputs = v["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 3);
    assert_eq!(v["shards"].as_array().unwrap().len(), 5, "{v}");
    let out = d.path().join("filled");
    ray_run(&py, &p, &out, &[], Duration::from_secs(600));
    for (clip, audio) in [(&a, true), (&b, false), (&c, true)] {
        let single = d.path().join(format!("single-{}", clip.file_name().unwrap().to_string_lossy()));
        single_run(clip, &single);
        assert_same(&single, &out.join(clip.file_name().unwrap()), audio);
    }
    no_part_files(&out);
}

#[test]
fn ray_runs_the_per_file_shards_of_an_extend_plan() {
    let Some(py) = ray_python() else { return };
    let d = tempfile::tempdir().unwrap();
    let clips = d.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    let a = clip(&clips, "a.mkv", "64x48", 30, &[10], "ffv1", true);
    let b = clip(&clips, "b.mkv", "96x64", 20, &[], "ffv1", false);
    let p = d.path().join("extend.json");
    assert_eq!(plan_job(&[&clips], &["--job", "extend", "--frames", "4", "--backward"], &p)["shards"].as_array().unwrap().len(), 2);
    let out = d.path().join("extended");
    let err = ray_run(&py, &p, &out, &["--", "--seed", "3"], Duration::from_secs(600));
    assert!(err.contains("`weft extend` shard(s)") && err.contains("2/2"), "{err}");
    for (clip, audio) in [(&a, true), (&b, false)] {
        let single = d.path().join("single.mkv");
        ok(weft().arg("extend").arg(clip).arg("-o").arg(&single).args(["--codec", "ffv1", "-q", "--overwrite", "--frames", "4", "--backward", "--seed", "3"]));
        assert_same(&single, &out.join(clip.file_name().unwrap()), audio);
    }
    no_part_files(&out);
}
