//! The conditioning plan: infill, extend and animate through one code path.

mod common;
use common::*;
use weft::{Config, Direction, Frame, GenerateOptions, Model, Plan, Prior, Slot, WeftError};

#[test]
fn infill_returns_exact_count_and_size() {
    let m = tiny_model(1);
    let before = clip(24, 16, 2, 0);
    let after = clip(24, 16, 2, 10);
    for n in [1, 3, 7] {
        let out = weft::infill(&m, &before, &after, n, &opts(5)).unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|f| f.width() == 24 && f.height() == 16));
    }
}

#[test]
fn gap_larger_than_window_runs_in_several_windows() {
    let m = tiny_model(1);
    let before = clip(16, 16, 3, 0);
    let after = clip(16, 16, 3, 40);
    // window 6 with 2+2 context leaves 2 slots a window: 13 frames need 7 windows.
    // Each window must see the real frames after the gap (bidirectional).
    let mut positions = Vec::new();
    let plan = Plan::infill(&before, 13, &after);
    weft::run_plan(&m, &plan, &opts(3), |p, f| {
        assert_eq!((f.width(), f.height()), (16, 16));
        positions.push(p);
        Ok::<(), weft::WeftError>(())
    })
    .unwrap();
    assert_eq!(positions, (3..16).collect::<Vec<_>>(), "generated in order, each once");
}

#[test]
fn gaps_at_start_and_end() {
    let m = tiny_model(2);
    let frames = clip(20, 12, 4, 0);
    // Gap at the very start: nothing before, generated backwards from the known frames.
    let start = weft::infill(&m, &[], &frames, 3, &opts(1)).unwrap();
    assert_eq!(start.len(), 3);
    // Gap at the very end.
    let end = weft::infill(&m, &frames, &[], 3, &opts(1)).unwrap();
    assert_eq!(end.len(), 3);
    // Backward runs hand out the nearest frame first.
    let plan = Plan::extend(&frames, 9, Direction::Backward);
    let mut order = Vec::new();
    weft::run_plan(&m, &plan, &opts(1), |p, _| {
        order.push(p);
        Ok::<(), weft::WeftError>(())
    })
    .unwrap();
    assert_eq!(order, (0..9).rev().collect::<Vec<_>>());
}

#[test]
fn extend_forward_and_backward_long() {
    let m = tiny_model(3);
    let frames = clip(16, 8, 3, 0);
    for dir in [Direction::Forward, Direction::Backward] {
        let out = weft::extend(&m, &frames, 11, dir, &opts(9)).unwrap();
        assert_eq!(out.len(), 11);
    }
    let one = weft::extend(&m, &frames, 1, Direction::Forward, &opts(9)).unwrap();
    assert_eq!(one.len(), 1);
}

#[test]
fn animate_keeps_the_still_as_frame_zero() {
    let m = tiny_model(4);
    let still = pattern(30, 18, 0);
    let out = weft::animate(&m, &still, 9, &opts(2)).unwrap();
    assert_eq!(out.len(), 9);
    assert_eq!(out[0].data(), still.data());
    let single = weft::animate(&m, &still, 1, &opts(2)).unwrap();
    assert_eq!(single, vec![still.clone()]);
}

#[test]
fn known_frames_come_back_byte_identical() {
    let m = tiny_model(5);
    let frames = clip(17, 13, 8, 0);
    let mut plan = Plan::new();
    for (i, f) in frames.iter().enumerate() {
        if i % 3 == 1 {
            plan.push(i as i64, Slot::Generate);
        } else {
            plan.push(i as i64, Slot::Known(f));
        }
    }
    let out = weft::generate(&m, &plan, &opts(7)).unwrap();
    assert_eq!(out.len(), 8);
    for (i, f) in frames.iter().enumerate() {
        if i % 3 != 1 {
            assert_eq!(out[i].data(), f.data(), "known frame {i} altered");
        }
    }
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let m = tiny_model(6);
    let before = clip(20, 20, 2, 0);
    let after = clip(20, 20, 2, 5);
    let a = weft::infill(&m, &before, &after, 2, &opts(11)).unwrap();
    let b = weft::infill(&m, &before, &after, 2, &opts(11)).unwrap();
    let c = weft::infill(&m, &before, &after, 2, &opts(12)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn odd_tiny_and_wide_sizes() {
    let m = tiny_model(7);
    for (w, h) in [(175, 143), (1, 1), (2, 1), (301, 3), (640, 4)] {
        let before = clip(w, h, 1, 0);
        let after = clip(w, h, 1, 3);
        let out = weft::infill(&m, &before, &after, 2, &opts(1)).unwrap();
        assert_eq!(out.len(), 2, "{w}x{h}");
        assert!(out.iter().all(|f| f.width() == w && f.height() == h), "{w}x{h}");
        let anim = weft::animate(&m, &before[0], 3, &opts(1)).unwrap();
        assert_eq!(anim[0], before[0]);
    }
}

#[test]
fn non_contiguous_known_frames_keep_their_timestamps() {
    // Known frames at 0, 1 and 10, 12; generate 2..=9 and 11.
    let m = tiny_model(8);
    let f = clip(12, 12, 4, 0);
    let mut plan = Plan::new().known(0, &f[0]).known(1, &f[1]).known(10, &f[2]).known(12, &f[3]);
    for p in (2..=9).chain([11]) {
        plan = plan.generate(p);
    }
    let out = weft::generate(&m, &plan, &opts(1)).unwrap();
    assert_eq!(out.len(), 13);
    assert_eq!(out[10], f[2]);
    assert_eq!(out[12], f[3]);
}

#[test]
fn bad_plans_and_options_are_named_errors() {
    let m = tiny_model(9);
    let a = pattern(8, 8, 0);
    let b = pattern(9, 8, 0);
    let err = weft::generate(&m, &Plan::new().known(0, &a).known(1, &b).generate(2), &opts(0)).unwrap_err();
    assert!(matches!(err, WeftError::BadPlan(ref s) if s.contains("9x8")), "{err}");
    let err = weft::generate(&m, &Plan::new().known(0, &a).known(0, &a), &opts(0)).unwrap_err();
    assert!(matches!(err, WeftError::BadPlan(ref s) if s.contains("position 0")), "{err}");
    let err = weft::generate(&m, &Plan::new().generate(0), &opts(0)).unwrap_err();
    assert!(matches!(err, WeftError::BadPlan(ref s) if s.contains("no known frame")), "{err}");
    let zero_steps = GenerateOptions { steps: 0, ..Default::default() };
    let err = weft::infill(&m, std::slice::from_ref(&a), &[], 1, &zero_steps).unwrap_err();
    assert!(matches!(err, WeftError::BadOptions(ref s) if s.contains("steps")), "{err}");
    let tiny_window = GenerateOptions { window: Some(1), ..opts(0) };
    let err = weft::infill(&m, std::slice::from_ref(&a), &[], 1, &tiny_window).unwrap_err();
    assert!(matches!(err, WeftError::BadOptions(ref s) if s.contains("window")), "{err}");
    assert!(Frame::from_rgb(0, 4, vec![]).is_err());
    assert!(Frame::from_rgb(2, 2, vec![0; 11]).is_err());
    let err = weft::extend(&m, &[], 3, Direction::Forward, &opts(0)).unwrap_err();
    assert!(matches!(err, WeftError::BadPlan(_)), "{err}");
}

#[test]
fn smallest_window_still_generates() {
    let m = tiny_model(10);
    let frames = clip(8, 8, 4, 0);
    let o = GenerateOptions { window: Some(2), ..opts(1) };
    let out = weft::infill(&m, &frames[..2], &frames[2..], 5, &o).unwrap();
    assert_eq!(out.len(), 5);
}

mod schedules {
    use super::*;
    use weft::tasks::Source;

    fn check_invariants(plan: &Plan<'_>, window: usize, context: usize) -> Vec<weft::tasks::WindowSchedule> {
        let ws = weft::schedule(plan, window, context).unwrap();
        let mut done = std::collections::HashSet::new();
        for w in &ws {
            assert!(w.len() <= window, "window of {} slots > {window}", w.len());
            assert!(!w.generate.is_empty());
            assert!(w.context.iter().any(|(_, s)| *s == Source::Known), "every window sees real footage");
            for (p, s) in &w.context {
                if *s == Source::Generated {
                    assert!(done.contains(p), "context {p} used before it was generated");
                }
            }
            for p in &w.generate {
                assert!(done.insert(*p), "{p} generated twice");
            }
        }
        assert_eq!(done.len(), plan.to_generate());
        ws
    }

    #[test]
    fn long_gap_windows_all_see_both_sides() {
        let f = clip(8, 8, 4, 0);
        let plan = Plan::infill(&f[..2], 13, &f[2..]);
        let ws = check_invariants(&plan, 6, 2);
        assert_eq!(ws.len(), 7);
        assert_eq!(ws[0].context, vec![(0, Source::Known), (1, Source::Known), (15, Source::Known), (16, Source::Known)]);
        for w in &ws {
            assert!(w.context.contains(&(15, Source::Known)) && w.context.contains(&(16, Source::Known)));
        }
        // Later windows continue from the frames just generated.
        assert_eq!(ws[1].context[..2], [(2, Source::Generated), (3, Source::Generated)]);
    }

    #[test]
    fn long_extension_keeps_a_real_anchor() {
        let f = clip(8, 8, 3, 0);
        let plan = Plan::extend(&f, 20, Direction::Forward);
        let ws = check_invariants(&plan, 8, 2);
        for w in &ws[1..] {
            assert!(w.context.contains(&(2, Source::Known)), "anchor missing: {w:?}");
            assert_eq!(w.context.iter().filter(|c| c.1 == Source::Generated).count(), 2);
        }
        let back = check_invariants(&Plan::extend(&f, 20, Direction::Backward), 8, 2);
        let order: Vec<i64> = back.iter().flat_map(|w| w.generate.clone()).collect();
        assert_eq!(order, (0..20).rev().collect::<Vec<_>>());
    }

    #[test]
    fn generated_frames_kept_alive_stay_bounded() {
        // However long the job, only `context` generated frames are needed later.
        let f = clip(8, 8, 2, 0);
        for n in [10, 100, 1000] {
            let plan = Plan::infill(&f[..1], n, &f[1..]);
            let ws = check_invariants(&plan, 8, 2);
            let mut last_use = std::collections::HashMap::new();
            for (i, w) in ws.iter().enumerate() {
                for (p, s) in &w.context {
                    if *s == Source::Generated {
                        last_use.insert(*p, i);
                    }
                }
            }
            let mut alive_max = 0;
            for (i, w) in ws.iter().enumerate() {
                let alive = w.generate.iter().chain(last_use.keys()).filter(|p| {
                    last_use.get(p).is_some_and(|&l| l > i) && ws[..=i].iter().any(|x| x.generate.contains(p))
                });
                alive_max = alive_max.max(alive.count());
            }
            assert!(alive_max <= 4, "n={n}: {alive_max} generated frames kept");
        }
    }

    #[test]
    fn many_gaps_are_separate_runs() {
        let f = clip(8, 8, 10, 0);
        let mut plan = Plan::new();
        for (i, fr) in f.iter().enumerate() {
            plan.push(i as i64 * 3, Slot::Known(fr));
            if i < 9 {
                plan.push(i as i64 * 3 + 1, Slot::Generate);
                plan.push(i as i64 * 3 + 2, Slot::Generate);
            }
        }
        let ws = check_invariants(&plan, 8, 2);
        assert_eq!(ws.len(), 9, "one window per two-frame gap");
    }
}

#[test]
fn low_strength_stays_near_the_start_estimate() {
    // With almost no noise, one step leaves the start nearly untouched,
    // whatever the (untrained) model predicts: the cross-fade for the noise
    // and blend priors, the motion-compensated estimate for the motion prior.
    let a = weft::Frame::filled(16, 16, [0, 100, 200]).unwrap();
    let b = weft::Frame::filled(16, 16, [100, 200, 0]).unwrap();
    let (pa, pb) = (common::pattern(32, 24, 0), common::pattern(32, 24, 2));
    for prior in [Prior::Noise, Prior::Blend, Prior::Motion] {
        let m = Model::untrained(&Config { prior, ..Config::tiny() }, 11, &candle_core::Device::Cpu).unwrap();
        let o = GenerateOptions { steps: 1, strength: 0.01, ..opts(3) };
        let (x, y) = if prior == Prior::Motion { (&pa, &pb) } else { (&a, &b) };
        let out = weft::infill(&m, std::slice::from_ref(x), std::slice::from_ref(y), 1, &o).unwrap();
        let start = match prior {
            Prior::Motion => weft::eval::motion(x, y, 1).remove(0),
            _ => weft::eval::blend(x, y, 1).remove(0),
        };
        let diff = weft::analysis::mean_abs_diff(&out[0], &start);
        // Noise prior: 1 % of unit noise (~1.3 levels) is mixed in.
        let limit = if prior == Prior::Noise { 3.0 } else { 1.0 };
        assert!(diff < limit, "{prior:?}: strayed {diff} levels from the start estimate");
        let bad = GenerateOptions { strength: 0.0, ..opts(3) };
        assert!(weft::infill(&m, std::slice::from_ref(x), std::slice::from_ref(y), 1, &bad).is_err());
    }
}

#[test]
fn a_failing_sink_stops_the_plan_with_its_own_error() {
    #[derive(Debug, PartialEq)]
    enum Mine {
        Full(i64),
        Weft(String),
    }
    impl From<WeftError> for Mine {
        fn from(e: WeftError) -> Self {
            Mine::Weft(e.to_string())
        }
    }
    let m = tiny_model(12);
    let f = clip(8, 8, 2, 0);
    let plan = Plan::infill(&f[..1], 20, &f[1..]);
    let mut seen = 0;
    let err = weft::run_plan(&m, &plan, &opts(0), |p, _| {
        seen += 1;
        if p == 3 { Err(Mine::Full(p)) } else { Ok(()) }
    })
    .unwrap_err();
    assert_eq!(err, Mine::Full(3));
    assert_eq!(seen, 3, "nothing generated after the sink failed");
    // Errors of weft itself arrive converted.
    let bad = GenerateOptions { steps: 0, ..opts(0) };
    let err = weft::run_plan(&m, &plan, &bad, |_, _| Ok::<(), Mine>(())).unwrap_err();
    assert!(matches!(err, Mine::Weft(ref s) if s.contains("steps")), "{err:?}");
}

#[test]
fn a_gap_longer_than_a_window_starts_from_its_real_bracketing_frames() {
    // A 7-frame gap with window 4 takes several windows, later ones seeing
    // generated frames as context; every slot's start is still the motion
    // estimate between the two real frames around the gap. With a very low
    // strength the output stays at that start, so each frame must match the
    // direct interpolation of the real pair at its own time.
    let (a, b) = (common::pattern(32, 24, 0), common::pattern(32, 24, 8));
    let m = Model::untrained(&Config { prior: Prior::Motion, ..Config::tiny() }, 5, &candle_core::Device::Cpu).unwrap();
    let o = GenerateOptions { steps: 1, strength: 0.01, window: Some(4), ..opts(3) };
    let plan = Plan::infill(std::slice::from_ref(&a), 7, std::slice::from_ref(&b));
    assert!(weft::schedule(&plan, 4, 2).unwrap().len() > 1, "the gap needs several windows");
    let out = weft::infill(&m, std::slice::from_ref(&a), std::slice::from_ref(&b), 7, &o).unwrap();
    let direct = weft::eval::motion(&a, &b, 7);
    for (i, (got, want)) in out.iter().zip(&direct).enumerate() {
        let diff = weft::analysis::mean_abs_diff(got, want);
        assert!(diff < 1.0, "frame {i}: {diff} levels from the real pair's interpolation");
    }
}

#[test]
fn animate_with_a_motion_prior_pushes_in_through_every_window() {
    // A motion-prior model starts an animate plan from the still seen by a
    // slow camera push-in, anchored at the still's own distance in every
    // window (here 12 frames in windows of 4), so the clip keeps moving, away
    // from the still, without drifting in colour. Low strength keeps the
    // output at that start.
    let still = smooth(48, 32, 0.0, 0.0);
    let m = Model::untrained(&Config { prior: Prior::Motion, ..Config::tiny() }, 6, &candle_core::Device::Cpu).unwrap();
    let o = GenerateOptions { steps: 1, strength: 0.01, window: Some(4), ..opts(3) };
    let out = weft::animate(&m, &still, 12, &o).unwrap();
    assert_eq!(out[0], still, "the still is frame 0, unchanged");
    let diff = weft::analysis::mean_abs_diff;
    for k in 0..11 {
        let change = diff(&out[k], &out[k + 1]);
        assert!(change > 0.05, "frames {k} and {} are the same ({change} levels)", k + 1);
    }
    assert!(diff(&out[11], &still) > diff(&out[3], &still), "the push-in goes on, away from the still");
    let mean = |f: &Frame, c: usize| f.data().iter().skip(c).step_by(3).map(|&v| v as f64).sum::<f64>() / (48.0 * 32.0);
    for c in 0..3 {
        assert!((mean(&out[11], c) - mean(&still, c)).abs() < 3.0, "channel {c} drifted");
    }
    // Same seed, same clip.
    assert_eq!(weft::animate(&m, &still, 12, &o).unwrap(), out);
}

/// A smooth, non-repeating colour texture seen through a window moved by (ox, oy).
fn smooth(w: usize, h: usize, ox: f32, oy: f32) -> Frame {
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (x, y, k) = (x as f32 + ox, y as f32 + oy, c as f32);
                let v = 128.0
                    + 50.0 * (x * 0.21 + k + (y * 0.13).sin() * 2.0).sin()
                    + 40.0 * (y * 0.17 - k * 0.7 + (x * 0.09).cos() * 1.5).cos()
                    + 25.0 * ((x + y) * 0.31 + k * 1.3).sin();
                px.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Frame::from_rgb(w, h, px).unwrap()
}

#[test]
fn extension_with_a_motion_prior_continues_the_motion_through_every_window() {
    // A pan of 1.5 px a frame: extending 9 frames in windows of 4 starts
    // every frame from the motion of the last two real frames continued to
    // its time, so each beats holding the last frame (away from the borders,
    // where the pan brings in what no frame has seen).
    let clip: Vec<Frame> = (0..14).map(|k| smooth(64, 48, 1.5 * k as f32, 0.0)).collect();
    let m = Model::untrained(&Config { prior: Prior::Motion, ..Config::tiny() }, 7, &candle_core::Device::Cpu).unwrap();
    let o = GenerateOptions { steps: 1, strength: 0.01, window: Some(4), ..opts(3) };
    let inner = |f: &Frame| {
        let mut d = Vec::new();
        for y in 8..40 {
            for x in 16..48 {
                d.extend_from_slice(&f.pixel(x, y));
            }
        }
        Frame::from_rgb(32, 32, d).unwrap()
    };
    for dir in [Direction::Forward, Direction::Backward] {
        let (known, truth): (&[Frame], Vec<&Frame>) = match dir {
            Direction::Forward => (&clip[..5], clip[5..].iter().collect()),
            Direction::Backward => (&clip[9..], clip[..9].iter().collect()),
        };
        let out = weft::extend(&m, known, 9, dir, &o).unwrap();
        let held = if dir == Direction::Forward { &known[4] } else { &known[0] };
        for (k, (got, want)) in out.iter().zip(&truth).enumerate() {
            let p = weft::eval::psnr(&[(&inner(got), &inner(want))]);
            let h = weft::eval::psnr(&[(&inner(held), &inner(want))]);
            assert!(p > h + 6.0, "{dir:?} frame {k}: {p:.2} dB, holding {h:.2} dB");
        }
    }
    // Back-and-forth footage: continuing the last motion would have predicted
    // the last known frame worse than holding, so the last frame is held.
    let jitter: Vec<Frame> = (0..5).map(|k| smooth(64, 48, 3.0 * (k % 2) as f32, 0.0)).collect();
    let out = weft::extend(&m, &jitter, 3, Direction::Forward, &o).unwrap();
    for (k, f) in out.iter().enumerate() {
        let d = weft::analysis::mean_abs_diff(f, &jitter[4]);
        assert!(d < 1.0, "frame {k} is {d} levels from the held frame");
    }
}

/// A textured frame translated by `dx` pixels (smooth, so every estimator
/// can follow it).
fn shifted(w: usize, h: usize, dx: f32) -> Frame {
    let mut d = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let u = x as f32 + dx;
            let v = |a: f32, b: f32| (127.5 + 100.0 * (a * 0.21 + b).sin() * (y as f32 * 0.17 + b).cos()) as u8;
            d.extend([v(u, 0.0), v(u, 1.3), v(u, 2.6)]);
        }
    }
    Frame::from_rgb(w, h, d).unwrap()
}

fn sse(a: &Frame, b: &Frame) -> u64 {
    a.data().iter().zip(b.data()).map(|(x, y)| (x.abs_diff(*y) as u64).pow(2)).sum()
}

#[test]
fn the_embedded_interpolator_fills_by_its_estimator_rule_and_says_which() {
    use weft::tasks::{EstimateRule, Method};
    let m = Model::embedded().unwrap();
    let frames: Vec<Frame> = (0..9).map(|k| shifted(64, 48, 2.0 * k as f32)).collect();
    let mut plan = Plan::new();
    for k in (0..9).filter(|&k| k != 4) {
        plan = plan.known(k as i64, &frames[k]);
    }
    let plan = plan.generate(4);
    let run = |rule| {
        let mut out = Vec::new();
        let opts = GenerateOptions { estimator: rule, ..Default::default() };
        let report = weft::run_plan(&m, &plan, &opts, |_, f| {
            out.push(f);
            Ok::<(), WeftError>(())
        })
        .unwrap();
        (out.pop().unwrap(), report)
    };
    let mut errors = Vec::new();
    let rules = [
        (EstimateRule::Flow, Method::Flow),
        (EstimateRule::Motion, Method::Motion),
        (EstimateRule::Blend, Method::Blend),
        (EstimateRule::Fuse, Method::Fused),
    ];
    for (rule, method) in rules {
        let (f, report) = run(rule);
        assert_eq!(report.methods.into_iter().collect::<Vec<_>>(), vec![(method, 1)]);
        errors.push((method, sse(&f, &frames[4])));
    }
    // Auto tests the three on the real frames beside the gap; on steady
    // motion its choice is as good as the best of them here.
    let (f, report) = run(EstimateRule::Auto);
    let (&chosen, _) = report.methods.iter().next().unwrap();
    let best = errors.iter().filter(|e| e.0 != Method::Fused).map(|e| e.1).min().unwrap();
    assert!(sse(&f, &frames[4]) <= best * 3 / 2 + 64, "auto chose {chosen:?}: {errors:?}");
    assert_ne!(chosen, Method::Blend, "a cross-fade cannot follow motion: {errors:?}");
    let blend = errors.iter().find(|e| e.0 == Method::Blend).unwrap().1;
    assert!(best * 4 < blend, "{errors:?}");
}

#[test]
fn every_slot_of_a_long_gap_is_interpolated_from_the_real_frames_at_its_own_time() {
    use weft::tasks::EstimateRule;
    let m = Model::embedded().unwrap();
    let (a, b) = (shifted(64, 48, 0.0), shifted(64, 48, 13.0));
    let opts = GenerateOptions { estimator: EstimateRule::Flow, window: Some(4), ..Default::default() };
    // 12 missing frames, far more than a window: still one pair, each at t = k / 13.
    let filled = weft::infill(&m, std::slice::from_ref(&a), std::slice::from_ref(&b), 12, &opts).unwrap();
    let interp = m.interpolator().unwrap();
    for (k, f) in filled.iter().enumerate() {
        assert_eq!(f, &interp.interpolate(&a, &b, (k + 1) as f32 / 13.0).unwrap(), "slot {k}");
    }
}
