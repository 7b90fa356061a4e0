//! The eval protocol on a synthetic clip with a tiny model.

mod common;
use common::*;
use weft::eval::{EvalOptions, evaluate_clip, table};

#[test]
fn eval_reports_every_gap_extension_and_animate() {
    let m = tiny_model(0);
    let frames = clip(24, 16, 20, 0);
    let opts = EvalOptions { generate: opts(1), positions: 2, ..Default::default() };
    let r = evaluate_clip(&m, "pattern", &frames, &opts).unwrap();
    assert_eq!(r.infill.iter().map(|g| g.gap).collect::<Vec<_>>(), vec![1, 3, 7]);
    for g in &r.infill {
        assert_eq!(g.positions, 2);
        assert!(g.blend.psnr.is_finite() && g.hold.psnr.is_finite() && g.weft.psnr.is_finite());
    }
    let e = r.extend.as_ref().unwrap();
    assert_eq!((e.weft_psnr.len(), e.hold_psnr.len(), e.positions), (4, 4, 2));
    assert!(r.animate.frame0_psnr.is_infinite(), "the still is frame 0, unchanged");
    assert!(r.animate.motion > 0.0);
    assert!(r.seconds_per_generated_frame > 0.0);
    let t = table(std::slice::from_ref(&r));
    assert!(t.contains("pattern") && t.contains("extension"));
    serde_json::to_string(&r).unwrap();
}

#[test]
fn eval_refuses_too_short_clips() {
    let m = tiny_model(0);
    let err = evaluate_clip(&m, "short", &clip(8, 8, 6, 0), &EvalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("too short"), "{err}");
}
