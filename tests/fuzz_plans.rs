//! Fuzzing random plans through the library: `weft::Plan`s of random shape
//! (frame sizes from 1x1 up, known and generated slots at scattered,
//! negative, huge or duplicate positions, mismatched frames), random options
//! (steps, window, context, strength, estimator, seed), through
//! `weft::generate`, `weft::run_plan` (with sinks that fail part-way),
//! `infill`, `extend`, `animate` and `schedule`, on the embedded interpolator
//! and tiny weft transformers of every prior (see tests/common/mod.rs). Every
//! case runs in process under `catch_unwind` and a time limit and must give
//! the frames the plan asks for (known frames unchanged, every slot to
//! generate exactly once, at the known frames' size) or, for a plan or
//! options that cannot run, a clear error; never a panic or a hang.
//!
//! `WEFT_FUZZ_CASES` cases per target (see `tests/fuzz/mod.rs`).

mod common;
mod fuzz;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fuzz::*;
use rand::Rng;
use weft::tasks::EstimateRule;
use weft::{Config, Direction, Frame, GenerateOptions, Model, Plan, Prior, WeftError};

const LIMIT: Duration = Duration::from_secs(60);

fn frame(rng: &mut Rng8, w: usize, h: usize) -> Frame {
    let kind = rng.random_range(0..4);
    let (a, b, c) = (rng.random_range(0..256), rng.random_range(1..9), rng.random_range(1..9));
    let mut d = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let px = match kind {
                0 => [(a + x * b) % 256, (a + y * c) % 256, (x + y + a) % 256],
                1 => [a, (a * 3) % 256, (a * 7) % 256],
                2 => [rng.random_range(0..256), rng.random_range(0..256), rng.random_range(0..256)],
                _ => [if (x / b + y / c) % 2 == 0 { 250 } else { 5 }, a, 128],
            };
            d.extend(px.iter().map(|&v| v as u8));
        }
    }
    Frame::from_rgb(w, h, d).unwrap()
}

/// One random plan: (position, known frame index or None) and the frames.
struct Case {
    slots: Vec<(i64, Option<usize>)>,
    frames: Vec<Frame>,
    opts: GenerateOptions,
    call: Call,
    /// Whether the plan or options are invalid (an error is the right answer).
    invalid: Vec<&'static str>,
    what: String,
}

#[derive(Clone, Copy, Debug)]
enum Call {
    Generate,
    RunPlan { fail_at: Option<usize> },
    Infill,
    Extend(Direction),
    Animate,
    Schedule,
}

fn random_case(rng: &mut Rng8, model_is_interpolator: bool) -> Case {
    // Frame size: mostly small, sometimes degenerate.
    let (w, h) = match rng.random_range(0..10) {
        0 => (rng.random_range(1..4), rng.random_range(1..4)),
        1 => (rng.random_range(1..64), 1),
        2 => (1, rng.random_range(1..64)),
        // The interpolator pads to 64: keep its frames small to stay quick.
        _ if model_is_interpolator => (rng.random_range(4..36), rng.random_range(4..30)),
        _ => (rng.random_range(4..48), rng.random_range(4..40)),
    };
    let n = match rng.random_range(0..10) {
        0 => 0,
        1 => 1,
        _ => rng.random_range(2..18),
    };
    let p_known = [0.2, 0.4, 0.6, 0.85][rng.random_range(0..4)];
    let start: i64 = match rng.random_range(0..40) {
        0 => i64::MIN + rng.random_range(0..4),
        1 => i64::MAX - 40,
        2 => -rng.random_range(0..1_000_000_000),
        3 => rng.random_range(0..1_000_000_000_000),
        // Across the edge of the positions a plan may use.
        4 => Plan::MAX_POSITION - rng.random_range(0..20),
        5 => -Plan::MAX_POSITION - rng.random_range(-20..4),
        6 => (1 << 24) - rng.random_range(0..8),
        _ => rng.random_range(-20..20),
    };
    let mut invalid = vec![];
    let mut slots = vec![];
    let mut frames = vec![];
    let mut p = start;
    // A plan in ten may repeat a position (or step back onto one).
    let loose = rng.random_bool(0.1);
    // A plan in twenty has a known frame of another size.
    let odd_one = rng.random_bool(0.05).then(|| rng.random_range(0..n.max(1)));
    for k in 0..n {
        let known = rng.random_bool(p_known);
        let idx = if known {
            let (fw, fh) = if odd_one == Some(k) { (w + 1, h) } else { (w, h) };
            frames.push(frame(rng, fw, fh));
            Some(frames.len() - 1)
        } else {
            None
        };
        slots.push((p, idx));
        let step: i64 = match rng.random_range(0..20) {
            0 if loose => 0,
            3 if loose => -rng.random_range(1..5),
            1 => rng.random_range(2..40),
            2 => rng.random_range(100..100_000),
            // Far from the first slot, where f32 times lose whole frames.
            4 if rng.random_bool(0.05) => 1 << rng.random_range(23..30),
            _ => 1,
        };
        p = p.saturating_add(step);
    }
    // A far-away slot (the other end of the i64 range, now and then).
    if n > 0 && rng.random_bool(0.03) {
        let far = if start < 0 { i64::MAX } else { i64::MIN };
        slots.push((far, None));
    }
    if rng.random_bool(0.5) {
        // Out of order: plans need not be sorted.
        let k = slots.len();
        for i in 0..k {
            slots.swap(i, rng.random_range(0..k));
        }
    }
    let mut positions: Vec<i64> = slots.iter().map(|s| s.0).collect();
    positions.sort();
    if slots.iter().any(|s| s.0.unsigned_abs() > Plan::MAX_POSITION as u64) {
        invalid.push("position out of range");
    } else if positions.windows(2).any(|w| w[0] == w[1]) {
        invalid.push("duplicate position");
    } else if let Some(&first) = positions.first()
        && positions.windows(2).any(|w| (w[0] - first) as f32 >= (w[1] - first) as f32)
    {
        invalid.push("times too close to tell apart");
    }
    let sizes: std::collections::BTreeSet<(usize, usize)> =
        slots.iter().filter_map(|s| s.1).map(|i| (frames[i].width(), frames[i].height())).collect();
    if sizes.len() > 1 {
        invalid.push("known frames of two sizes");
    }
    let to_generate = slots.iter().filter(|s| s.1.is_none()).count();
    if to_generate > 0 && sizes.is_empty() {
        invalid.push("nothing known");
    }

    let mut opts = GenerateOptions { seed: rng.random(), ..Default::default() };
    opts.steps = match rng.random_range(0..40) {
        0 => 0,
        1 => 1001,
        _ => rng.random_range(1..4),
    };
    if !(1..=1000).contains(&opts.steps) {
        invalid.push("steps");
    }
    opts.window = match rng.random_range(0..40) {
        0 => Some(rng.random_range(0..2)),
        1 => Some(300),
        2..=12 => Some(rng.random_range(2..12)),
        _ => None,
    };
    if opts.window.is_some_and(|w| !(2..=256).contains(&w)) {
        invalid.push("window");
    }
    opts.context = match rng.random_range(0..10) {
        0 => 0,
        1 => rng.random_range(10..1000),
        _ => rng.random_range(1..5),
    };
    opts.strength = match rng.random_range(0..40) {
        0 => 0.0,
        1 => f32::NAN,
        2 => 1.5,
        3 => -0.5,
        4..=11 => rng.random_range(0.05..1.0),
        _ => 1.0,
    };
    if !(opts.strength > 0.0 && opts.strength <= 1.0) {
        invalid.push("strength");
    }
    opts.estimator = [EstimateRule::Auto, EstimateRule::Flow, EstimateRule::Motion, EstimateRule::Blend, EstimateRule::Fuse]
        [rng.random_range(0..5)];
    let call = match rng.random_range(0..12) {
        0..=3 => Call::Generate,
        4 | 5 => Call::RunPlan { fail_at: None },
        6 => Call::RunPlan { fail_at: Some(rng.random_range(0..4)) },
        7 => Call::Infill,
        8 => Call::Extend(if rng.random_bool(0.5) { Direction::Forward } else { Direction::Backward }),
        9 => Call::Animate,
        _ => Call::Schedule,
    };
    let what = format!(
        "{call:?} {w}x{h}, {} slots ({} to generate) at {:?}, steps {} window {:?} context {} strength {} {:?}",
        slots.len(),
        to_generate,
        {
            let mut p: Vec<i64> = slots.iter().map(|s| s.0).collect();
            p.sort();
            p.dedup();
            if p.len() > 6 { format!("{}..{}", p[0], p[p.len() - 1]) } else { format!("{p:?}") }
        },
        opts.steps,
        opts.window,
        opts.context,
        opts.strength,
        opts.estimator,
    );
    Case { slots, frames, opts, call, invalid, what }
}

#[derive(Debug)]
enum SinkError {
    Mine(i64),
    Weft(String),
}

impl From<WeftError> for SinkError {
    fn from(e: WeftError) -> Self {
        SinkError::Weft(e.to_string())
    }
}

/// Runs a case; `Ok(kind)` or `Err(failure)`.
fn run_case(model: &Model, c: &Case) -> Result<String, String> {
    let mut plan = Plan::new();
    for (p, f) in &c.slots {
        plan = match f {
            Some(i) => plan.known(*p, &c.frames[*i]),
            None => plan.generate(*p),
        };
    }
    let known: BTreeMap<i64, &Frame> = c.slots.iter().filter_map(|(p, f)| f.map(|i| (*p, &c.frames[i]))).collect();
    let size = known.values().next().map(|f| (f.width(), f.height()));
    let wrong_size = |f: &Frame| Some((f.width(), f.height())) != size;
    let invalid = !c.invalid.is_empty();
    let outcome = |r: Result<(), String>| -> Result<String, String> {
        match r {
            Ok(()) if invalid => Err(format!("accepted a plan that cannot run ({})", c.invalid.join(", "))),
            Ok(()) => Ok("ok".into()),
            Err(e) => {
                if let Some(why) = unclear(&e) {
                    return Err(why);
                }
                if !invalid {
                    return Err(format!("a valid plan failed: {e}"));
                }
                Ok(format!("error: {}", kind_of(strip_backtrace(&e))))
            }
        }
    };
    match c.call {
        Call::Generate => outcome(weft::generate(model, &plan, &c.opts).map_err(|e| e.to_string()).and_then(|out| {
            let mut sorted: Vec<(i64, Option<usize>)> = c.slots.clone();
            sorted.sort_by_key(|s| s.0);
            if out.len() != sorted.len() {
                return Err(format!("{} frames for {} slots", out.len(), sorted.len()));
            }
            for ((p, k), f) in sorted.iter().zip(&out) {
                match k {
                    Some(i) if *f != c.frames[*i] => return Err(format!("known frame at {p} changed")),
                    None if wrong_size(f) => return Err(format!("frame at {p} is {}x{}", f.width(), f.height())),
                    _ => {}
                }
            }
            Ok(())
        })),
        Call::RunPlan { fail_at } => {
            let mut got: Vec<i64> = vec![];
            let mut bad = None;
            let r = weft::run_plan(model, &plan, &c.opts, |p, f| {
                if wrong_size(&f) {
                    bad = Some(format!("frame at {p} is {}x{}", f.width(), f.height()));
                }
                if fail_at == Some(got.len()) {
                    return Err(SinkError::Mine(p));
                }
                got.push(p);
                Ok(())
            });
            if let Some(b) = bad {
                return Err(b);
            }
            let mut want: Vec<i64> = c.slots.iter().filter(|s| s.1.is_none()).map(|s| s.0).collect();
            want.sort();
            match r {
                Err(SinkError::Mine(p)) => {
                    if invalid || fail_at != Some(got.len()) {
                        return Err(format!("the sink's error at {p} arrived wrongly ({} frames before it)", got.len()));
                    }
                    Ok("sink error passed through".into())
                }
                Err(SinkError::Weft(e)) => outcome(Err(e)),
                Ok(_) => {
                    if fail_at.is_some_and(|k| k < want.len()) && !invalid {
                        return Err("the sink failed but run_plan succeeded".into());
                    }
                    let mut g = got.clone();
                    g.sort();
                    if !invalid && g != want {
                        return Err(format!("generated {:?}, wanted {:?}", short_list(&g), short_list(&want)));
                    }
                    outcome(Ok(()))
                }
            }
        }
        Call::Infill | Call::Extend(_) | Call::Animate => {
            // The convenience calls take the known frames in order and a count.
            let frames: Vec<Frame> = known.values().map(|f| (*f).clone()).collect();
            let n = c.slots.iter().filter(|s| s.1.is_none()).count();
            let half = frames.len() / 2;
            let r = match c.call {
                Call::Infill => weft::infill(model, &frames[..half], &frames[half..], n, &c.opts),
                Call::Extend(d) => weft::extend(model, &frames, n, d, &c.opts),
                _ => match frames.first() {
                    Some(still) => weft::animate(model, still, n, &c.opts),
                    None => return Ok("nothing to animate".into()),
                },
            };
            // Validity differs from the plan's: judge these on their own terms.
            let sizes: std::collections::BTreeSet<_> = frames.iter().map(|f| (f.width(), f.height())).collect();
            let opts_bad = c.invalid.iter().any(|i| ["steps", "window", "strength"].contains(i));
            let cannot = opts_bad
                || match c.call {
                    Call::Infill | Call::Extend(_) => (frames.is_empty() && n > 0) || sizes.len() > 1,
                    // Only the still matters.
                    _ => n == 0,
                };
            match r {
                Ok(out) => {
                    if cannot {
                        return Err("accepted a call that cannot run".into());
                    }
                    let want = n;
                    if out.len() != want {
                        return Err(format!("{} frames, wanted {want}", out.len()));
                    }
                    if matches!(c.call, Call::Animate) && out[0] != frames[0] {
                        return Err("animate changed its still".into());
                    }
                    if let Some(f) = out.iter().find(|f| (f.width(), f.height()) != (frames[0].width(), frames[0].height())) {
                        return Err(format!("a {}x{} frame", f.width(), f.height()));
                    }
                    Ok("ok".into())
                }
                Err(e) => {
                    let e = e.to_string();
                    if let Some(why) = unclear(&e) {
                        return Err(why);
                    }
                    if !cannot {
                        return Err(format!("a valid call failed: {e}"));
                    }
                    Ok(format!("error: {}", kind_of(strip_backtrace(&e))))
                }
            }
        }
        Call::Schedule => {
            let window = c.opts.window.unwrap_or(8);
            match weft::schedule(&plan, window, c.opts.context) {
                Err(e) => {
                    let e = e.to_string();
                    if let Some(why) = unclear(&e) {
                        return Err(why);
                    }
                    let plan_bad = !c.invalid.iter().all(|i| ["steps", "window", "strength"].contains(i));
                    if !(plan_bad || window < 2) {
                        return Err(format!("a valid plan failed to schedule: {e}"));
                    }
                    Ok(format!("error: {}", kind_of(&e)))
                }
                Ok(ws) => {
                    let plan_bad = !c.invalid.iter().all(|i| ["steps", "window", "strength"].contains(i));
                    if plan_bad || window < 2 {
                        return Err("scheduled a plan that cannot run".into());
                    }
                    let mut scheduled: Vec<i64> = ws.iter().flat_map(|w| w.generate.clone()).collect();
                    if ws.iter().any(|w| w.len() > window || w.generate.is_empty()) {
                        return Err("a window too long or generating nothing".into());
                    }
                    scheduled.sort();
                    let mut want: Vec<i64> = c.slots.iter().filter(|s| s.1.is_none()).map(|s| s.0).collect();
                    want.sort();
                    if scheduled != want {
                        return Err(format!("scheduled {:?}, wanted {:?}", short_list(&scheduled), short_list(&want)));
                    }
                    Ok("ok".into())
                }
            }
        }
    }
}

fn short_list(v: &[i64]) -> String {
    if v.len() > 8 { format!("{:?}..({} in all)", &v[..8], v.len()) } else { format!("{v:?}") }
}

fn fuzz_model(target: &str, default_cases: usize, model: Model) {
    let model = Arc::new(model);
    let is_interp = model.interpolator().is_some();
    let mut tally = Tally::new(target);
    for i in 0..cases(default_cases) {
        if !tally.selected(i) {
            continue;
        }
        let mut rng = case_rng(target, tally.seed, i);
        let c = random_case(&mut rng, is_interp);
        tally.start(i, &c.what);
        let (m, what) = (model.clone(), c.what.clone());
        match guarded(LIMIT, move || run_case(&m, &c)) {
            Outcome::Done(Ok(kind)) => tally.outcome(&kind),
            Outcome::Done(Err(why)) => tally.fail(i, &what, &why),
            Outcome::Panicked(m) => tally.fail(i, &what, &format!("panic: {m}")),
            Outcome::TimedOut => tally.fail(i, &what, &format!("hang: over {} s", LIMIT.as_secs())),
        }
    }
    tally.finish();
}

#[test]
fn plans_on_the_embedded_interpolator() {
    fuzz_model("plans-embedded", 100, Model::embedded().expect("the embedded model"));
}

#[test]
fn plans_on_a_tiny_trained_transformer() {
    fuzz_model("plans-transformer", 200, common::tiny_model(5));
}

#[test]
fn plans_on_untrained_transformers_of_every_prior() {
    let mut models = vec![];
    for (i, prior) in [Prior::Noise, Prior::Blend, Prior::Motion].into_iter().enumerate() {
        models.push(Model::untrained(&Config { prior, ..Config::tiny() }, i as u64, &candle_core::Device::Cpu).unwrap());
    }
    // One model a target keeps the case streams independent of the others.
    let mut it = models.into_iter();
    fuzz_model("plans-prior-noise", 100, it.next().unwrap());
    fuzz_model("plans-prior-blend", 100, it.next().unwrap());
    fuzz_model("plans-prior-motion", 100, it.next().unwrap());
}

/// Failures the fuzzer found, kept as plain cases.
mod regressions {
    use super::*;

    fn must_be_bad_plan(model: Model, plan_of: impl FnOnce(&Frame, &Frame) -> Vec<(i64, bool)> + Send + 'static) {
        let out = guarded(Duration::from_secs(30), move || {
            let a = common::pattern(12, 10, 0);
            let b = common::pattern(12, 10, 3);
            let slots = plan_of(&a, &b);
            let mut plan = Plan::new();
            for (i, (p, known)) in slots.iter().enumerate() {
                plan = if *known { plan.known(*p, if i % 2 == 0 { &a } else { &b }) } else { plan.generate(*p) };
            }
            let opts = GenerateOptions { steps: 1, ..Default::default() };
            weft::generate(&model, &plan, &opts).map(|_| ()).map_err(|e| e.to_string())
        });
        match out {
            Outcome::Done(Err(e)) => assert!(e.contains("bad plan") && e.contains("out of range"), "{e}"),
            Outcome::Done(Ok(())) => panic!("accepted"),
            Outcome::Panicked(m) => panic!("panic: {m}"),
            Outcome::TimedOut => panic!("hang"),
        }
    }

    #[test]
    fn positions_at_the_ends_of_i64_are_errors() {
        // Were: `attempt to add/subtract with overflow` in the prior's basis
        // (`p + 1`, `kb + (kb - ka)`) and in the window's times (`p - origin`).
        let near_max = |_: &Frame, _: &Frame| vec![(i64::MAX - 3, true), (i64::MAX - 1, false), (i64::MAX, true)];
        must_be_bad_plan(Model::embedded().unwrap(), near_max);
        must_be_bad_plan(common::tiny_model(1), near_max);
        let spanning = |_: &Frame, _: &Frame| vec![(i64::MIN, true), (-3, false), (0, true), (i64::MAX, false)];
        must_be_bad_plan(common::tiny_model(1), spanning);
    }

    #[test]
    fn plans_far_from_zero_run() {
        // Was: the slots at 638777068052.. all became the same f32 time and
        // the interpolation time 0/0 = NaN failed the plan ("bad options:
        // interpolation time NaN is outside [0, 1]"). Times now count from the
        // plan's first slot.
        let a = common::pattern(12, 10, 0);
        let b = common::pattern(12, 10, 3);
        for model in [Model::embedded().unwrap(), common::tiny_model(3)] {
            let p = 638_777_068_051;
            let plan = Plan::new().known(p, &a).generate(p + 1).generate(p + 2).known(p + 3, &b);
            let out = weft::generate(&model, &plan, &GenerateOptions { steps: 1, ..Default::default() }).unwrap();
            assert_eq!(out.len(), 4);
        }
    }

    #[test]
    fn slots_too_close_for_f32_far_from_the_first_are_errors() {
        let e = guarded(Duration::from_secs(30), || {
            let a = common::pattern(12, 10, 0);
            let far = 1 << 30;
            let plan = Plan::new().known(0, &a).known(far, &a).generate(far + 1).known(far + 2, &a);
            weft::generate(&Model::embedded().unwrap(), &plan, &GenerateOptions::default()).map(|_| ()).map_err(|e| e.to_string())
        });
        match e {
            Outcome::Done(Err(e)) => assert!(e.contains("too close") && e.contains("1073741824"), "{e}"),
            Outcome::Done(Ok(())) => panic!("accepted"),
            Outcome::Panicked(m) => panic!("panic: {m}"),
            Outcome::TimedOut => panic!("hang"),
        }
    }

    #[test]
    fn the_largest_positions_still_run() {
        let m = Plan::MAX_POSITION;
        let a = common::pattern(12, 10, 0);
        let b = common::pattern(12, 10, 3);
        for model in [Model::embedded().unwrap(), common::tiny_model(2)] {
            for (lo, hi) in [(m - 3, m), (-m, -m + 3)] {
                let plan = Plan::new().known(lo, &a).generate(lo + 1).generate(lo + 2).known(hi, &b);
                let out = weft::generate(&model, &plan, &GenerateOptions { steps: 1, ..Default::default() }).unwrap();
                assert_eq!(out.len(), 4);
                assert_eq!((out[0].clone(), out[3].clone()), (a.clone(), b.clone()));
            }
        }
    }
}
