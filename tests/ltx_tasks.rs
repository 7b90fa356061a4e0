//! Infill, extend and animate through an LTX-Video model: the plan's known
//! frames condition each window at their own positions. Run on the tiny
//! random LTX fixtures laid out as a diffusers snapshot (a random model
//! makes no sensible pictures: these tests check the plumbing: counts,
//! sizes, known frames untouched, windows, seeds).

mod common;
#[path = "ltx_support.rs"]
mod ltx_support;

use common::{clip, pattern};
use ltx_support::tiny_snapshot;
use weft::model::ltx::generate::LtxSettings;
use weft::{Direction, Frame, GenerateOptions, Model, Plan};

fn model() -> (tempfile::TempDir, Model) {
    let d = tempfile::tempdir().unwrap();
    tiny_snapshot(d.path(), true);
    let m = Model::load(d.path()).unwrap();
    assert!(m.ltx().is_some());
    (d, m)
}

fn opts(seed: u64) -> GenerateOptions {
    GenerateOptions {
        seed,
        ltx: LtxSettings { prompt: "a red fox".into(), steps: 2, gen_size: 32, window: 9, context: 5, ..Default::default() },
        ..Default::default()
    }
}

fn differs(a: &Frame, b: &Frame) -> bool {
    a.data() != b.data()
}

#[test]
fn infill_keeps_the_known_frames_and_generates_the_gap() {
    let (_d, m) = model();
    let before = clip(40, 24, 6, 0);
    let after = clip(40, 24, 3, 9);
    let out = weft::infill(&m, &before, &after, 3, &opts(1)).unwrap();
    assert_eq!(out.len(), 3);
    for f in &out {
        assert_eq!((f.width(), f.height()), (40, 24));
    }
    // Same seed, same bytes; another seed, other frames.
    assert_eq!(out, weft::infill(&m, &before, &after, 3, &opts(1)).unwrap());
    assert!(differs(&out[0], &weft::infill(&m, &before, &after, 3, &opts(2)).unwrap()[0]));
    // The whole timeline: known frames byte-identical.
    let plan = Plan::infill(&before, 3, &after);
    let all = weft::generate(&m, &plan, &opts(1)).unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(&all[..6], &before[..]);
    assert_eq!(&all[9..], &after[..]);
    assert_eq!(&all[6..9], &out[..]);
    let mut methods = Vec::new();
    let report = weft::run_plan::<weft::WeftError>(&m, &plan, &opts(1), |p, _| {
        methods.push(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(methods, vec![6, 7, 8]);
    assert_eq!(report.describe(), "ltx-video x3");
}

#[test]
fn a_long_extension_runs_in_windows_forward_and_backward() {
    let (_d, m) = model();
    let c = clip(36, 20, 7, 0);
    // 9-slot windows with a 5-frame lead: 4 new frames per window.
    let fwd = weft::extend(&m, &c, 14, Direction::Forward, &opts(3)).unwrap();
    assert_eq!(fwd.len(), 14);
    assert!(fwd.iter().all(|f| (f.width(), f.height()) == (36, 20)));
    assert_eq!(fwd, weft::extend(&m, &c, 14, Direction::Forward, &opts(3)).unwrap());
    let back = weft::extend(&m, &c, 6, Direction::Backward, &opts(3)).unwrap();
    assert_eq!(back.len(), 6);
}

#[test]
fn animate_a_still_and_odd_and_wide_sizes() {
    let (_d, m) = model();
    let still = pattern(175, 143, 0);
    let out = weft::animate(&m, &still, 6, &opts(0)).unwrap();
    assert_eq!(out.len(), 6);
    assert_eq!(out[0], still, "animate's first frame is the still");
    assert!(out[1..].iter().all(|f| (f.width(), f.height()) == (175, 143)));
    let wide = clip(200, 24, 2, 0);
    let more = weft::extend(&m, &wide, 1, Direction::Forward, &opts(0)).unwrap();
    assert_eq!((more[0].width(), more[0].height()), (200, 24));
}

#[test]
fn bad_settings_and_a_missing_text_encoder_are_errors() {
    let (_d, m) = model();
    let c = clip(32, 32, 2, 0);
    let mut o = opts(0);
    o.ltx.guidance = 0.5;
    let e = weft::extend(&m, &c, 2, Direction::Forward, &o).unwrap_err().to_string();
    assert!(e.contains("guidance must be in [1, 50]"), "{e}");
    let mut o = opts(0);
    o.ltx.prompt = "fox ".repeat(200);
    o.ltx.max_sequence_length = 16;
    let e = weft::extend(&m, &c, 2, Direction::Forward, &o).unwrap_err().to_string();
    assert!(e.contains("longer than 16 tokens"), "{e}");
    // No text encoder in the snapshot: a clear error naming it.
    let d = tempfile::tempdir().unwrap();
    tiny_snapshot(d.path(), false);
    let m2 = Model::load(d.path()).unwrap();
    let e = weft::extend(&m2, &c, 2, Direction::Forward, &opts(0)).unwrap_err().to_string();
    assert!(e.contains("text encoder"), "{e}");
}

#[test]
fn an_observer_hears_every_denoising_step_of_every_window() {
    let (_d, m) = model();
    let c = clip(36, 20, 7, 0);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut o = opts(3);
    o.observer = Some(weft::tasks::Observer(std::sync::Arc::new(move |e: &weft::tasks::StepEvent| {
        sink.lock().unwrap().push(e.clone());
    })));
    let with = weft::extend(&m, &c, 14, Direction::Forward, &o).unwrap();
    // Progress does not change the frames.
    assert_eq!(with, weft::extend(&m, &c, 14, Direction::Forward, &opts(3)).unwrap());
    let ev = events.lock().unwrap();
    // 9-slot windows with a 5-frame lead make 4 frames each: 14 frames, 4 windows of 2 steps.
    assert_eq!(ev.len(), 4 * 2, "{ev:?}");
    assert!(ev.iter().all(|e| e.windows == 4 && e.steps == 2));
    assert_eq!(ev.iter().map(|e| (e.window, e.step)).collect::<Vec<_>>(), vec![(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2)]);
    assert_eq!(ev.last().unwrap().eta, 0.0);
}

#[test]
fn the_empty_prompt_runs_t5_once_per_model() {
    let (_d, m) = model();
    let c = clip(32, 32, 3, 0);
    let text = &m.ltx().unwrap().text;
    // No prompt, guidance on: the prompt and the negative prompt are both "".
    let mut o = opts(1);
    o.ltx.prompt = String::new();
    assert!(o.ltx.guided());
    let a = weft::extend(&m, &c, 2, Direction::Forward, &o).unwrap();
    assert_eq!(text.encoder_runs(), 1);
    let b = weft::extend(&m, &c, 2, Direction::Forward, &o).unwrap();
    assert_eq!(text.encoder_runs(), 1, "the second job reuses the cached empty prompt");
    assert_eq!(a, b);
    // A prompt runs T5 for itself; its empty negative prompt is cached.
    weft::extend(&m, &c, 2, Direction::Forward, &opts(1)).unwrap();
    assert_eq!(text.encoder_runs(), 2);
}

#[test]
fn the_sampling_recipe_is_told_from_the_checkpoint() {
    use weft::model::ltx::generate::LtxPreset;
    use weft::model::ltx::load::detect_preset;
    let d = tempfile::tempdir().unwrap();
    let dev = d.path().join("LTX-Video-0.9.7-dev");
    let distilled = d.path().join("LTX-Video-0.9.7-distilled");
    tiny_snapshot(&dev, false);
    tiny_snapshot(&distilled, false);
    assert_eq!(detect_preset(&dev), LtxPreset::Dev);
    assert_eq!(detect_preset(&distilled), LtxPreset::Distilled);
    // A single file whose `config` metadata lists fixed inference steps.
    let write = |name: &str, config: &str| {
        let p = d.path().join(name);
        let data = [0u8; 8];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
        let meta = std::collections::HashMap::from([("config".to_string(), config.to_string())]);
        safetensors::serialize_to_file([("x", view)], Some(meta), &p).unwrap();
        p
    };
    let steps = write("ltxv-2b.safetensors", r#"{"scheduler": {"allowed_inference_steps": [1.0, 0.9937, 0.725]}}"#);
    let none = write("ltxv-2b-b.safetensors", r#"{"scheduler": {"shift": 1.0}}"#);
    assert_eq!(detect_preset(&steps), LtxPreset::Distilled);
    assert_eq!(detect_preset(&none), LtxPreset::Dev);
    // The recipes.
    let s = LtxPreset::Distilled.settings();
    assert_eq!(s.guidance, 1.0);
    assert_eq!(s.timesteps.as_deref(), Some(&LtxPreset::DISTILLED_TIMESTEPS[..]));
    assert_eq!(s.image_cond_noise_scale, 0.0);
    s.check().unwrap();
    assert_eq!(LtxPreset::Dev.settings(), LtxSettings::default());
    assert_eq!(LtxPreset::parse(" Distilled "), Some(LtxPreset::Distilled));
    assert_eq!(LtxPreset::parse("fast"), None);
}

/// The official inference's preparation of conditioning frames (a 3x3
/// Gaussian blur, a libx264 round trip at CRF 29) changes what conditions
/// the windows only: the known frames come back byte-identical, the same
/// seed gives the same bytes, and the generated frames differ from a job
/// without it (each option alone too).
#[cfg(feature = "ffmpeg")]
#[test]
fn blurred_and_compressed_conditioning_leaves_the_known_frames_alone() {
    use weft::model::ltx::condition::{OFFICIAL_BLUR_SIGMA, OFFICIAL_CRF};
    let (_d, m) = model();
    let before = clip(40, 24, 6, 0);
    let after = clip(40, 24, 3, 9);
    let plan = Plan::infill(&before, 3, &after);
    let with = |blur: f64, crf: u32| {
        let mut o = opts(1);
        o.ltx.condition_blur = blur;
        o.ltx.condition_crf = crf;
        o.ltx.condition_codec = Some(weft::pipeline::condition::libx264());
        o
    };
    let prepared = weft::generate(&m, &plan, &with(OFFICIAL_BLUR_SIGMA, OFFICIAL_CRF)).unwrap();
    assert_eq!(&prepared[..6], &before[..]);
    assert_eq!(&prepared[9..], &after[..]);
    assert_eq!(prepared, weft::generate(&m, &plan, &with(OFFICIAL_BLUR_SIGMA, OFFICIAL_CRF)).unwrap());
    let plain = weft::generate(&m, &plan, &opts(1)).unwrap();
    assert_ne!(prepared[6..9], plain[6..9]);
    // Off (a codec given, nothing asked of it) is the plain job.
    assert_eq!(weft::generate(&m, &plan, &with(0.0, 0)).unwrap(), plain);
    for (blur, crf) in [(OFFICIAL_BLUR_SIGMA, 0), (0.0, OFFICIAL_CRF)] {
        let one = weft::generate(&m, &plan, &with(blur, crf)).unwrap();
        assert_eq!(&one[..6], &before[..]);
        assert_ne!(one[6..9], plain[6..9], "blur {blur}, CRF {crf}");
        assert_ne!(one[6..9], prepared[6..9], "blur {blur}, CRF {crf}");
    }
    // A CRF without a codec, or out of range, is a one-line error.
    let mut o = opts(1);
    o.ltx.condition_crf = OFFICIAL_CRF;
    let e = weft::generate(&m, &plan, &o).unwrap_err().to_string();
    assert!(e.contains("condition CRF 29 needs a codec"), "{e}");
    let e = weft::generate(&m, &plan, &with(0.0, 60)).unwrap_err().to_string();
    assert!(e.contains("condition CRF must be in 1..=51") && !e.contains('\n'), "{e}");
    let e = weft::generate(&m, &plan, &with(-1.0, 0)).unwrap_err().to_string();
    assert!(e.contains("condition blur must be a Gaussian sigma") && !e.contains('\n'), "{e}");
}
