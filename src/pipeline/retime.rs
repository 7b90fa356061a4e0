//! Frame-rate conversion (`weft infill --fps RATE`): the output is constant
//! frame rate at RATE, its slots at times `j / RATE` from the first frame.
//!
//! * A slot on which an original frame sits exactly passes that original
//!   (encoded from the decoded frame, like every original the pipeline
//!   writes: with a lossless codec it decodes to the same bytes).
//! * Every other slot is generated at its own time from the real frames
//!   around it: the plan is laid out on a fine grid of "ticks" on which the
//!   frame times of both rates are integers, the known frames at their true
//!   times, so the default model interpolates each slot at its own fraction
//!   of the way between the two originals around it.
//! * Originals that fall between slots (lowering the rate) condition the
//!   slots around them but are not written; holes in the input's timeline
//!   are just longer stretches between originals.
//! * A slot between two originals across a scene cut holds the earlier one.
//! * The last original covers its own frame duration: slots after it and
//!   before its end hold it, so the clip keeps its length (and stays in sync
//!   with the copied audio).
//!
//! Streams like `infill`: a few originals of context on each side of the
//! stretch being generated are held, whatever the clip's length.

use std::collections::VecDeque;
use std::path::Path;

use ff::util::frame::Video;
use ffmpeg_next as ff;

use super::input::{Decoded, Event, Reader};
use super::output::{self, Writer};
use super::timeline::{Gap, Grid, Ratio};
use super::{
    Error, Held, Job, OutputOptions, Part, Progress, Result, Summary, check_threshold, input_err, same_scene, spec_for,
};
use crate::analysis::scene_score;
use crate::frame::Frame;
use crate::model::Model;
use crate::tasks::{GenerateOptions, Plan, run_plan};

/// Options of [`retime`].
#[derive(Clone, Debug)]
pub struct RetimeOptions {
    /// The output frame rate.
    pub rate: Ratio,
    /// A slot between two originals whose scene score is above this holds
    /// the earlier one instead of being generated.
    pub scene_threshold: f64,
}

/// Parses `--fps` like [`super::parse_rate`] (`60`, `50`, `30000/1001`),
/// except that a decimal NTSC rate (`23.976`, `29.97`, `59.94`, `119.88`)
/// stands for the exact `N * 1000 / 1001` it names, so that 29.97 fps
/// footage converted to `59.94` keeps every original.
pub fn parse_fps(s: &str) -> Result<Ratio> {
    let rate = super::parse_rate(s).map_err(|e| Error::Args(format!("--fps: {e}")))?;
    if s.contains('.') && !s.contains('/') {
        let v = rate.as_f64() * 1.001;
        let n = v.round();
        if n >= 1.0 && (v - n).abs() < 0.005 && (rate.as_f64() - n).abs() > 0.005 {
            return Ok(Ratio::new(n as i64 * 1000, 1001).expect("den > 0"));
        }
    }
    Ok(rate)
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn reduced(r: Ratio) -> (i128, i128) {
    let g = gcd(r.num as i128, r.den as i128).max(1);
    (r.num as i128 / g, r.den as i128 / g)
}

/// The fine grid on which the frame times of both rates are integers:
/// ticks per input frame and per output frame (coprime). `None` when the
/// rates are too incommensurable for a 64-bit timeline.
fn ticks(rate_in: Ratio, rate_out: Ratio) -> Option<(i64, i64)> {
    let (a, b) = reduced(rate_in);
    let (c, d) = reduced(rate_out);
    // Ticks per second: a multiple of both numerators.
    let t = a / gcd(a, c) * c;
    let (i, o) = (b * t / a, d * t / c);
    let g = gcd(i, o);
    let (i, o) = (i / g, o / g);
    // At least two ticks per input frame: no two known frames of a plan are
    // then adjacent positions (the estimator's validation triples, built from
    // the known frames around a hole, need room between them).
    let (i, o) = if i == 1 { (2, 2 * o) } else { (i, o) };
    const MAX: i128 = 1 << 31;
    (i <= MAX && o <= MAX).then_some((i as i64, o as i64))
}

/// The output grid: `rate` from the input's first frame, in the input's
/// time base when that holds every output frame time exactly, else in a
/// time base of about 1/90000 s that does.
pub(super) fn out_grid(input: Grid, rate: Ratio) -> Result<Grid> {
    let (num, den) = reduced(rate);
    let tb = input.time_base;
    let (n, d) = (den * tb.den as i128, num * tb.num as i128);
    if n % d == 0 {
        return Ok(Grid { t0: input.t0, time_base: tb, rate });
    }
    let m = ((90_000 * den + num - 1) / num).max(1);
    let (tn, td) = (den, num * m);
    let g = gcd(tn, td);
    let (tn, td) = (tn / g, td / g);
    if td > i32::MAX as i128 || num > i32::MAX as i128 || den > i32::MAX as i128 {
        return Err(Error::Args(format!("--fps {rate}: too precise a frame rate (numerator and denominator must fit 32 bits)")));
    }
    let time_base = Ratio::new(tn as i64, td as i64).expect("den > 0");
    // The first frame's time in the new time base.
    let (p, q) = (input.t0 as i128 * tb.num as i128 * td, tb.den as i128 * tn);
    let t0 = if p >= 0 { (p + q / 2) / q } else { -((-p + q / 2) / q) };
    Ok(Grid { t0: t0 as i64, time_base, rate })
}

/// `rate` reduced, checked to be a rate `retime` converts `in_rate` to:
/// the rate and the ticks per input and per output frame.
pub(super) fn check_rates(in_rate: Ratio, rate: Ratio) -> Result<(Ratio, i64, i64)> {
    if rate.den <= 0 || rate.num <= 0 || rate.as_f64() > 1000.0 {
        return Err(Error::Args(format!("--fps must be in (0, 1000], got {rate}")));
    }
    let rate = {
        let (num, den) = reduced(rate);
        Ratio::new(num as i64, den as i64).expect("den > 0")
    };
    let (in_step, out_step) = ticks(in_rate, rate).ok_or_else(|| {
        Error::Args(format!("--fps {rate}: no common frame grid with the input's {in_rate} fps (pick a simpler rate)"))
    })?;
    Ok((rate, in_step, out_step))
}

/// The first decoded frame; creates the job's writer on the output grid
/// (other streams' packets read before it are kept for the writer, which
/// copies them unless the job writes a shard's segment).
fn first_frame(job: &mut Job<'_>, rate: Ratio) -> Result<Option<Decoded>> {
    loop {
        match job.reader.next(job.progress)? {
            None => return Ok(None),
            Some(Event::Packet(p)) => job.pending.push(p),
            Some(Event::Frame(d)) => {
                let grid = out_grid(job.reader.grid().expect("set with the first frame"), rate)?;
                let spec = spec_for(&d.frame, grid, 0);
                let streams = (!job.segment).then_some((&job.reader.ictx, job.reader.video));
                let mut w = Writer::create(job.output, job.out_opts, &spec, streams, job.progress)?;
                for p in job.pending.drain(..) {
                    w.write_packet(p)?;
                }
                job.summary.codec = w.codec_name.clone();
                job.writer = Some(w);
                job.summary.frames_in += 1;
                return Ok(Some(d));
            }
        }
    }
}

/// Converts `input` to constant frame rate `opts.rate` and writes `output`
/// (see the module docs). Other streams are copied as `infill` copies them.
#[allow(clippy::too_many_arguments)]
pub fn retime(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &RetimeOptions,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    retime_part(model, input, output, opts, out_opts, genopts, progress, None)
}

/// [`retime`], or with `part` one shard of it, video only: the output slots
/// from the time of input position `part.start` up to (not including) that
/// of `part.end`. Decoding starts `margin` frames before the shard as in
/// [`super::infill_part`]; originals before the shard are context only.
#[allow(clippy::too_many_arguments)]
pub(super) fn retime_part(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &RetimeOptions,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
    part: Option<Part>,
) -> Result<Summary> {
    check_threshold(opts.scene_threshold)?;
    if opts.rate.den <= 0 || opts.rate.num <= 0 || opts.rate.as_f64() > 1000.0 {
        return Err(Error::Args(format!("--fps must be in (0, 1000], got {}", opts.rate)));
    }
    output::check_output_path(output, out_opts.overwrite)?;
    let k = crate::tasks::known_context(model, genopts, crate::tasks::MAX_VALIDATION_CONTEXT).max(1);
    let reader = match part {
        Some(p) if k as i64 <= p.margin => Reader::open_at(input, p.grid, p.start - p.margin)?,
        Some(_) => Reader::open(input, false)?,
        None => Reader::open(input, true)?,
    };
    let in_rate = reader.rate;
    let (rate, in_step, out_step) = check_rates(in_rate, opts.rate)?;
    let estimate = match part {
        Some(p) => Some((p.end - p.start) as u64),
        None => reader.estimated_frames(),
    };
    progress.set_total(estimate.map(|n| (n as f64 * in_step as f64 / out_step as f64).ceil() as u64));
    let mut job = Job::new(input, output, model, genopts, out_opts, progress, reader, 0);
    job.segment = part.is_some();
    let Some(first) = first_frame(&mut job, rate)? else {
        // No frame at all: let the reader name the problem.
        job.reader.finish(progress)?;
        return Err(input_err(input, "the video stream has no frames"));
    };
    let inside = |pos: i64| part.is_none_or(|p| p.start <= pos && pos < p.end);
    let mut queue: VecDeque<Held> = VecDeque::from([Held { pos: first.pos, frame: first.frame, rgb: None }]);
    let mut history: VecDeque<Held> = VecDeque::new();
    let mut eof = false;
    // The next output slot to write (a shard's first: the first slot at or
    // after its start), and originals not on the output grid.
    let mut next = part.map_or(0, |p| (p.start * in_step + out_step - 1).div_euclid(out_step));
    let mut skipped = 0u64;
    let mut cuts = 0u64;
    loop {
        while !eof && queue.len() < k + 1 {
            match job.next_frame()? {
                Some(d) => queue.push_back(Held { pos: d.pos, frame: d.frame, rgb: None }),
                None => eof = true,
            }
        }
        let Some(mut item) = queue.pop_front() else { break };
        let at = item.pos * in_step;
        if let Some(prev) = history.back() {
            if item.pos > prev.pos + 1 {
                let gap = Gap { start: prev.pos + 1, count: item.pos - prev.pos - 1 };
                if inside(gap.start) != inside(gap.end() - 1) {
                    return Err(input_err(
                        input,
                        format!(
                            "frames {}..{} are missing across the edge of the shard: the input is not the one planned (make the plan again)",
                            gap.start,
                            gap.end()
                        ),
                    ));
                }
                if inside(gap.start) {
                    let grid = job.reader.grid().expect("a frame was decoded");
                    super::check_hole(input, gap, grid, "cut the input there first, e.g. with ffmpeg -t")?;
                    job.summary.filled.push(gap);
                }
            }
            // (Before a shard's start no slot is due: `next` is past them.)
            let mut slots = Vec::new();
            while next * out_step < at {
                slots.push(next);
                next += 1;
            }
            if !slots.is_empty() && fill(&mut job, opts.scene_threshold, &mut history, &mut item, &mut queue, k, &slots, in_step, out_step)? {
                cuts += 1;
            }
        }
        if let Some(p) = part
            && item.pos >= p.end
        {
            // The slots up to the shard's end are written; the rest are the next shard's.
            job.stopped_early = true;
            break;
        }
        if next * out_step == at {
            job.write_original(next, &item.frame)?;
            next += 1;
        } else if inside(item.pos) {
            skipped += 1;
        }
        history.push_back(item);
        if history.len() > k {
            history.pop_front();
        }
    }
    if !job.stopped_early {
        // The last original lasts one input frame: slots before its end hold it.
        let last = history.back().expect("a frame was decoded");
        let end = (last.pos + 1) * in_step;
        let tail: Video = last.frame.clone();
        while next * out_step < end {
            job.write_original(next, &tail)?;
            job.summary.held += 1;
            next += 1;
        }
    }
    if let Some(p) = part
        && job.writer.as_ref().is_some_and(|w| w.frames == 0)
    {
        return Err(input_err(input, format!("no frame in the shard's range {}..{}: the input is not the one planned", p.start, p.end)));
    }
    if !job.summary.filled.is_empty() {
        let missing: i64 = job.summary.filled.iter().map(|g| g.count).sum();
        progress.note(&format!(
            "filled {} hole(s) in the input's timeline ({missing} frame(s) missing at {in_rate} fps) on the way",
            job.summary.filled.len()
        ));
    }
    if cuts > 0 {
        progress.note(&format!("{cuts} scene cut(s): the slots across them hold the frame before the cut"));
    }
    if skipped > 0 {
        progress.note(&format!("{skipped} original frame(s) fall between the {rate} fps slots: used as context, not written"));
    }
    job.finish()
}

/// Fills `slots` (output slot numbers), which lie strictly between the
/// last frame of `history` and `item`: generated at their own times, or the
/// earlier frame held when a scene cut lies between the two. Returns
/// whether it held at a cut.
#[allow(clippy::too_many_arguments)]
fn fill(
    job: &mut Job<'_>,
    threshold: f64,
    history: &mut VecDeque<Held>,
    item: &mut Held,
    queue: &mut VecDeque<Held>,
    k: usize,
    slots: &[i64],
    in_step: i64,
    out_step: i64,
) -> Result<bool> {
    let input = job.input;
    // Context after: the next original and those contiguous with it.
    item.rgb(&mut job.conv, input)?;
    let mut n_after = 0;
    let mut last = item.pos;
    for q in queue.iter_mut() {
        if n_after + 1 >= k || q.pos != last + 1 {
            break;
        }
        q.rgb(&mut job.conv, input)?;
        n_after += 1;
        last = q.pos;
    }
    for h in history.iter_mut() {
        h.rgb(&mut job.conv, input)?;
    }
    // Plan positions in ticks from the original before the slots (small
    // numbers, whatever the position in the clip).
    let origin = history.back().expect("an original before the slots").pos;
    let tick = |pos: i64| (pos - origin) * in_step;
    let base = origin * in_step;
    let before: Vec<(i64, &Frame)> = history.iter().rev().map(|h| (tick(h.pos), h.rgb.as_ref().expect("converted"))).collect();
    let after: Vec<(i64, &Frame)> = std::iter::once((tick(item.pos), item.rgb.as_ref().expect("converted")))
        .chain(queue.iter().take(n_after).map(|q| (tick(q.pos), q.rgb.as_ref().expect("converted"))))
        .collect();
    let score = scene_score(before[0].1, after[0].1);
    if score > threshold {
        let grid = job.reader.grid().expect("a frame was decoded");
        job.progress.note(&format!(
            "scene cut at {:.2} s (frame {}, score {score:.2}): {} slot(s) hold the frame before it",
            grid.seconds(item.pos),
            item.pos,
            slots.len()
        ));
        let held = &history.back().expect("before").frame;
        for &j in slots {
            job.write_original(j, held)?;
        }
        job.summary.held += slots.len() as u64;
        return Ok(true);
    }
    let before = same_scene(&before, threshold);
    let after = same_scene(&after, threshold);
    let mut plan = Plan::new();
    for (p, f) in before.iter().chain(after.iter()) {
        plan = plan.known(*p, f);
    }
    for &j in slots {
        plan = plan.generate(j * out_step - base);
    }
    let writer = job.writer.as_mut().expect("created with the first frame");
    let progress = job.progress;
    let mut count = 0u64;
    // Known frames before the slots: the run is generated (and handed out) in order.
    // Plan positions are local: the noise of a model that samples (a weft
    // transformer) differs from stretch to stretch, reproducibly.
    let mut genopts = job.genopts.clone();
    genopts.seed = genopts.seed.wrapping_add(origin as u64);
    let report = run_plan(job.model, &plan, &genopts, |pos, f| -> Result<()> {
        let t = pos + base;
        debug_assert_eq!(t % out_step, 0, "a generated slot off the output grid");
        writer.write_rgb(t / out_step, &f)?;
        count += 1;
        progress.set_done(writer.frames);
        Ok(())
    })?;
    job.summary.generated += count;
    job.summary.methods.merge(&report);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(num: i64, den: i64) -> Ratio {
        Ratio::new(num, den).unwrap()
    }

    #[test]
    fn ntsc_decimals_are_exact() {
        assert_eq!(parse_fps("29.97").unwrap(), r(30000, 1001));
        assert_eq!(parse_fps("59.94").unwrap(), r(60000, 1001));
        assert_eq!(parse_fps("23.976").unwrap(), r(24000, 1001));
        assert_eq!(parse_fps("30000/1001").unwrap(), r(30000, 1001));
        assert_eq!(parse_fps("2997/100").unwrap(), r(2997, 100));
        assert_eq!(parse_fps("60").unwrap().as_f64(), 60.0);
        assert_eq!(parse_fps("25.0").unwrap().as_f64(), 25.0);
        assert_eq!(parse_fps("12.5").unwrap().as_f64(), 12.5);
        assert!(parse_fps("0").unwrap_err().to_string().starts_with("--fps: frame rate `0`"));
    }

    #[test]
    fn ticks_hold_both_grids() {
        assert_eq!(ticks(r(25, 1), r(50, 1)), Some((2, 1)));
        assert_eq!(ticks(r(24, 1), r(60, 1)), Some((5, 2)));
        assert_eq!(ticks(r(50, 1), r(25, 1)), Some((2, 4)));
        assert_eq!(ticks(r(25, 1), r(25, 1)), Some((2, 2)));
        assert_eq!(ticks(r(30000, 1001), r(60, 1)), Some((1001, 500)));
        // Unreduced rates give the same grid.
        assert_eq!(ticks(r(50000, 1000), r(50, 2)), Some((2, 4)));
        let (i, o) = ticks(r(30000, 1001), r(2997, 100)).unwrap();
        assert_eq!((i, o), (999_999, 1_000_000));
    }

    #[test]
    fn output_grid_is_exact() {
        let mkv = Grid { t0: 40, time_base: r(1, 1000), rate: r(25, 1) };
        let g = out_grid(mkv, r(50, 1)).unwrap();
        assert_eq!((g.time_base, g.t0), (r(1, 1000), 40));
        assert_eq!(g.ts_of(3), 100);
        let g = out_grid(mkv, r(60, 1)).unwrap();
        assert_eq!(g.time_base, r(1, 90_000));
        assert_eq!(g.t0, 3600);
        assert_eq!(g.ts_of(1) - g.ts_of(0), 1500);
        let g = out_grid(mkv, r(30000, 1001)).unwrap();
        assert_eq!(g.ts_of(1) - g.ts_of(0), g.ts_of(2) - g.ts_of(1));
        assert!((g.seconds(30000) - 1001.0).abs() < 1e-9);
    }
}
