//! The LTX-Video options of the video commands (`--prompt`, `--guidance`,
//! `--gen-size`, `--text-encoder`, `--dtype`, `--timesteps`, `--steps`):
//! one-line errors for LTX-only options with another model and for bad
//! values (checked before the model loads), a missing text encoder named,
//! and `--model <snapshot>` generating through the tiny random LTX fixtures
//! (no sensible pictures: counts, originals untouched, seeds).

#[path = "cli_support.rs"]
mod support;

#[path = "ltx_support.rs"]
mod ltx_support;

use std::path::{Path, PathBuf};

use ltx_support::{tiny_snapshot, tiny_t5};
use support::*;

/// A 6-frame 40x24 ffv1 clip.
fn short_clip(dir: &Path) -> PathBuf {
    clip(dir, "in.mkv", "40x24", 6, &[], "ffv1", false)
}

fn snapshot(dir: &Path, name: &str, text: bool) -> PathBuf {
    let root = dir.join(name);
    tiny_snapshot(&root, text);
    root
}

/// `weft extend CLIP -o DIR/out.mkv --frames 2 extra..`, expecting `needle`
/// on the one error line, and no output left.
fn extend_fails(dir: &Path, input: &Path, extra: &[&str], needle: &str) -> String {
    let line = fails(weft().arg("extend").arg(input).arg("-o").arg(dir.join("out.mkv")).args(["--frames", "2"]).args(extra), needle);
    assert_no_output(dir, "out.mkv");
    line
}

const LTX_ONLY: [(&str, &str); 10] = [
    ("--prompt", "a red fox"),
    ("--negative-prompt", "blurry"),
    ("--guidance", "3"),
    ("--gen-size", "256"),
    ("--text-encoder", "."),
    ("--dtype", "bf16"),
    ("--timesteps", "1000,500"),
    ("--ltx-preset", "distilled"),
    ("--condition-blur", "1"),
    ("--condition-crf", "29"),
];

#[test]
fn ltx_options_need_an_ltx_model() {
    let d = tempfile::tempdir().unwrap();
    let c = short_clip(d.path());
    let line = extend_fails(d.path(), &c, &["--prompt", "a red fox"], "--prompt needs a generative model (LTX-Video)");
    assert_eq!(line, "weft: --prompt needs a generative model (LTX-Video); the embedded interpolator cannot follow a prompt");
    let weft_model = model();
    let wm = weft_model.to_str().unwrap();
    for (opt, value) in LTX_ONLY {
        extend_fails(d.path(), &c, &[opt, value], &format!("{opt} needs a generative model (LTX-Video); the embedded interpolator"));
        let line = extend_fails(d.path(), &c, &["--model", wm, opt, value], &format!("{opt} needs a generative model (LTX-Video)"));
        assert!(line.contains(wm), "{line}");
    }
    // Every command has them.
    let png = d.path().join("still.png");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=40x24", "-frames:v", "1", png.to_str().unwrap()]);
    fails(weft().arg("animate").arg(&png).arg("-o").arg(d.path().join("a.mkv")).args(["--frames", "3", "--prompt", "x"]), "--prompt needs a generative model");
    fails(weft().arg("infill").arg(&c).arg("-o").arg(d.path().join("i.mkv")).args(["--guidance", "2"]), "--guidance needs a generative model");
    // --steps stays a weft option: its own range.
    extend_fails(d.path(), &c, &["--steps", "0"], "--steps must be in 1..=1000, got 0");
}

#[test]
fn bad_ltx_values_are_one_line_errors_before_the_model_loads() {
    let d = tempfile::tempdir().unwrap();
    let c = short_clip(d.path());
    let snap = snapshot(d.path(), "snap", true);
    let s = snap.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--guidance", "0.5"], "--guidance: guidance must be in [1, 50] (1: off), got 0.5"),
        (&["--guidance", "51"], "--guidance: guidance must be in [1, 50]"),
        (&["--guidance", "-2"], "--guidance: guidance must be in [1, 50] (1: off), got -2"),
        (&["--guidance", "NaN"], "--guidance: guidance must be in [1, 50]"),
        (&["--guidance", "strong"], "invalid value 'strong' for '--guidance <G>'"),
        (&["--gen-size", "16"], "--gen-size: generation size must be in 32..=2048 pixels, got 16"),
        (&["--gen-size", "4096"], "--gen-size: generation size must be in 32..=2048 pixels, got 4096"),
        (&["--gen-size", "-3"], "invalid value '-3' for '--gen-size <PX>'"),
        (&["--steps", "0"], "--steps: steps must be in 1..=1000, got 0"),
        (&["--steps", "1001"], "--steps: steps must be in 1..=1000, got 1001"),
        (&["--timesteps", "abc"], "--timesteps: \"abc\" is not a number"),
        (&["--timesteps", ""], "--timesteps: \"\" is not a number"),
        (&["--timesteps", "1000,,500"], "--timesteps: \"\" is not a number"),
        (&["--timesteps", "1000,0"], "--timesteps: 0 is outside (0, 1000]"),
        (&["--timesteps", "1500,900"], "--timesteps: 1500 is outside (0, 1000]"),
        (&["--timesteps", "500,900"], "--timesteps must decrease"),
        (&["--dtype", "f16"], "invalid value 'f16' for '--dtype <DTYPE>'"),
        (&["--condition-blur", "-1"], "--condition-blur: condition blur must be a Gaussian sigma in (0, 10] pixels"),
        (&["--condition-blur", "12"], "--condition-blur: condition blur must be a Gaussian sigma in (0, 10] pixels"),
        (&["--condition-crf", "60"], "--condition-crf: condition CRF must be in 1..=51 (0: off; the official inference's is 29), got 60"),
        (&["--condition-crf", "high"], "invalid value 'high' for '--condition-crf <CRF>'"),
    ];
    for (args, needle) in cases {
        extend_fails(d.path(), &c, &[&["--model", s][..], args].concat(), needle);
        // Checked before the model is read: a checkpoint that is not there
        // still gets the option's error.
        let nowhere = d.path().join("nowhere.safetensors");
        extend_fails(d.path(), &c, &[&["--model", nowhere.to_str().unwrap()][..], args].concat(), needle);
    }
    // And a model that is not there, with good values, is named.
    extend_fails(d.path(), &c, &["--model", d.path().join("nowhere.safetensors").to_str().unwrap(), "--guidance", "2"], "nowhere.safetensors");
}

#[test]
fn text_encoder_pointing_nowhere_or_missing() {
    let d = tempfile::tempdir().unwrap();
    let c = short_clip(d.path());
    let snap = snapshot(d.path(), "snap", true);
    let bare = snapshot(d.path(), "bare", false);
    let (s, b) = (snap.to_str().unwrap(), bare.to_str().unwrap());
    let none = d.path().join("no-t5");
    let line = extend_fails(d.path(), &c, &["--model", s, "--text-encoder", none.to_str().unwrap()], "--text-encoder");
    assert!(line.contains("no-t5: no such folder"), "{line}");
    // A folder that holds no T5.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    extend_fails(d.path(), &c, &["--model", s, "--text-encoder", empty.to_str().unwrap()], "holds neither text_encoder/ + tokenizer/ nor a T5 encoder");
    // A snapshot without one: the prompt cannot be encoded, said before any work.
    let line = extend_fails(d.path(), &c, &["--model", b, "--prompt", "a red fox"], "--prompt needs a T5 text encoder");
    assert!(line.contains("bare has none") && line.contains("no text_encoder/ and tokenizer/") && line.contains("--text-encoder DIR"), "{line}");
    // Without a prompt too (even the empty prompt is encoded).
    extend_fails(d.path(), &c, &["--model", b], "has no T5 text encoder, and LTX-Video needs one even without --prompt");
    // Given one, the bare snapshot runs.
    let out = d.path().join("te.mkv");
    ok(weft()
        .arg("extend")
        .arg(&c)
        .arg("-o")
        .arg(&out)
        .args(["--frames", "2", "--codec", "ffv1", "--gen-size", "32", "--steps", "1", "-q", "--model", b, "--prompt", "a red fox", "--text-encoder"])
        .arg(tiny_t5()));
    assert_eq!(video_md5s(&out).len(), 8);
}

/// Runs `weft extend` on `c` through the snapshot, returning the output's frame MD5s.
fn ltx_extend(d: &Path, c: &Path, snap: &str, name: &str, extra: &[&str]) -> Vec<String> {
    let out = d.join(name);
    let (_, err) = ok(weft()
        .arg("extend")
        .arg(c)
        .arg("-o")
        .arg(&out)
        .args(["--frames", "4", "--codec", "ffv1", "--gen-size", "32", "--steps", "2", "--model", snap, "--prompt", "a red fox"])
        .args(extra));
    assert!(err.contains("4 generated") && err.contains("made by ltx-video x4"), "{err}");
    video_md5s(&out)
}

// (Written against src/tasks/ltx.rs, which runs weft's plans through LTX-Video.)
#[test]
fn an_ltx_snapshot_extends_infills_and_animates() {
    let d = tempfile::tempdir().unwrap();
    let c = short_clip(d.path());
    let snap = snapshot(d.path(), "snap", true);
    let s = snap.to_str().unwrap();
    let ins = video_md5s(&c);

    // Extend: 6 + 4 frames, the originals byte-identical, same seed same bytes.
    let a = ltx_extend(d.path(), &c, s, "a.mkv", &[]);
    assert_eq!(a.len(), 10);
    assert_eq!(&a[..6], &ins[..], "original frames changed");
    assert_eq!(a, ltx_extend(d.path(), &c, s, "b.mkv", &[]), "same seed, other bytes");
    let other = ltx_extend(d.path(), &c, s, "c.mkv", &["--seed", "1"]);
    assert_eq!(&other[..6], &ins[..]);
    assert_ne!(&other[6..], &a[6..], "another seed, same frames");
    // The other options reach the model: a negative prompt with guidance
    // changes the frames, explicit timesteps without guidance run too.
    let neg = ltx_extend(d.path(), &c, s, "d.mkv", &["--negative-prompt", "blurry", "--guidance", "4"]);
    assert_ne!(&neg[6..], &a[6..]);
    let ts = ltx_extend(d.path(), &c, s, "e.mkv", &["--timesteps", "1000,500,100", "--guidance", "1", "--dtype", "f32"]);
    assert_eq!(&ts[..6], &ins[..]);
    assert_ne!(&ts[6..], &a[6..]);
    let bf = ltx_extend(d.path(), &c, s, "f.mkv", &["--dtype", "bf16"]);
    assert_eq!(&bf[..6], &ins[..]);
    // The official conditioning-frame preparation: the originals untouched,
    // other generated frames, the same again with the same seed.
    let prep = ["--condition-blur", "1", "--condition-crf", "29"];
    let p = ltx_extend(d.path(), &c, s, "g.mkv", &prep);
    assert_eq!(&p[..6], &ins[..]);
    assert_ne!(&p[6..], &a[6..]);
    assert_eq!(p, ltx_extend(d.path(), &c, s, "h.mkv", &prep), "same seed, other bytes");
    // Backward: the originals at the end.
    let back = d.path().join("back.mkv");
    ok(weft()
        .arg("extend")
        .arg(&c)
        .arg("-o")
        .arg(&back)
        .args(["--frames", "3", "--backward", "--codec", "ffv1", "--gen-size", "32", "--steps", "2", "-q", "--model", s]));
    let bk = video_md5s(&back);
    assert_eq!(bk.len(), 9);
    assert_eq!(&bk[3..], &ins[..]);

    // Infill: frames 2 and 3 dropped (holes in the timeline) and generated.
    let holes = clip(d.path(), "holes.mkv", "40x24", 8, &[2, 3], "ffv1", false);
    let hin = video_md5s(&holes);
    let filled = d.path().join("filled.mkv");
    let (_, err) = ok(weft()
        .arg("infill")
        .arg(&holes)
        .arg("-o")
        .arg(&filled)
        .args(["--codec", "ffv1", "--gen-size", "32", "--steps", "2", "--model", s, "--prompt", "a red fox"]));
    assert!(err.contains("2 generated"), "{err}");
    let f = video_md5s(&filled);
    assert_eq!(f.len(), 8);
    assert_eq!(&f[..2], &hin[..2]);
    assert_eq!(&f[4..], &hin[2..]);

    // Animate: the still is the first frame.
    let png = d.path().join("still.png");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=40x24", "-frames:v", "1", "-pix_fmt", "rgb24", png.to_str().unwrap()]);
    let clip_out = d.path().join("anim.mkv");
    let (_, err) = ok(weft()
        .arg("animate")
        .arg(&png)
        .arg("-o")
        .arg(&clip_out)
        .args(["--frames", "5", "--codec", "ffv1", "--gen-size", "32", "--steps", "2", "--model", s, "--prompt", "a red fox"]));
    assert!(err.contains("5 frames, 4 generated"), "{err}");
    assert_eq!(video_md5s(&clip_out).len(), 5);
}

/// A distilled checkpoint (told by its name) takes the distilled recipe: no
/// guidance and its fixed timesteps; the frames are those of
/// `--ltx-preset distilled` on the same weights under a dev name, and
/// `--ltx-preset dev` brings the dev recipe back.
#[test]
fn a_distilled_checkpoint_takes_the_distilled_recipe() {
    let d = tempfile::tempdir().unwrap();
    let c = short_clip(d.path());
    let plain = snapshot(d.path(), "LTX-Video-0.9.7-dev", true);
    let distilled = snapshot(d.path(), "LTX-Video-0.9.7-distilled", true);
    let (p, q) = (plain.to_str().unwrap(), distilled.to_str().unwrap());
    let run = |snap: &str, name: &str, extra: &[&str]| {
        let out = d.path().join(name);
        ok(weft()
            .arg("extend")
            .arg(&c)
            .arg("-o")
            .arg(&out)
            .args(["--frames", "4", "--codec", "ffv1", "--gen-size", "32", "-q", "--model", snap, "--prompt", "a red fox"])
            .args(extra));
        video_md5s(&out)
    };
    let q_default = run(q, "q.mkv", &[]);
    assert_eq!(run(p, "p-distilled.mkv", &["--ltx-preset", "distilled"]), q_default);
    let dev = run(p, "p.mkv", &["--steps", "2"]);
    assert_ne!(dev, q_default);
    assert_eq!(run(q, "q-dev.mkv", &["--ltx-preset", "dev", "--steps", "2"]), dev);
    // Options still apply over the recipe.
    assert_ne!(run(q, "q-guided.mkv", &["--guidance", "3"]), q_default);
}
