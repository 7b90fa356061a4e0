//! Extending a clip forward or backward and animating a still: the frames
//! the model makes written around (or after) the decoded originals.

use std::collections::VecDeque;
use std::path::Path;

use super::*;

/// Writes `input` with `n` generated frames after it (or before it). The
/// other streams are copied as they are; with `Backward` they are delayed by
/// the added frames so they stay in sync with the original frames.
#[allow(clippy::too_many_arguments)]
pub fn extend(
    model: &Model,
    input: &Path,
    output: &Path,
    n: usize,
    direction: Direction,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    if n == 0 {
        return Err(Error::Args("extend needs at least one frame to add".into()));
    }
    output::check_output_path(output, out_opts.overwrite)?;
    let reader = Reader::open(input, true)?;
    check_new_frames(n, "extending by", reader.rate)?;
    progress.set_total(reader.estimated_frames().map(|e| e + n as u64));
    // The frames the model extends from (for weft's models at least
    // `MIN_EXTEND_CONTEXT`, for LTX-Video its window lead).
    let k = crate::tasks::context_frames(model, genopts).extend;
    let shift = if direction == Direction::Backward { n as i64 } else { 0 };
    let mut job = Job::new(input, output, model, genopts, out_opts, progress, reader, shift);
    let mut history: VecDeque<Held> = VecDeque::new();
    let mut last: Option<i64> = None;
    if direction == Direction::Backward {
        // The first k contiguous frames condition the frames before them.
        let mut first: Vec<Held> = Vec::new();
        while first.len() < k {
            let Some(d) = job.next_frame()? else { break };
            let contiguous = first.last().is_none_or(|l| d.pos == l.pos + 1);
            first.push(Held { pos: d.pos, frame: d.frame, rgb: None });
            if !contiguous {
                break;
            }
        }
        if first.is_empty() {
            job.reader.finish(progress)?;
            return Err(input_err(input, "the video stream has no frames"));
        }
        let start = first[0].pos;
        let n_ctx = first.windows(2).take_while(|w| w[1].pos == w[0].pos + 1).count() + 1;
        let rgbs: Vec<(i64, Frame)> = first[..n_ctx]
            .iter_mut()
            .map(|h| { let p = h.pos; h.rgb(&mut job.conv, input).map(|f| (p, f.clone())) })
            .collect::<Result<_>>()?;
        let refs: Vec<(i64, &Frame)> = rgbs.iter().map(|(p, f)| (*p, f)).collect();
        let mut plan = Plan::new();
        for (p, f) in same_scene(&refs, f64::INFINITY) {
            plan = plan.known(p, f);
        }
        for p in start - n as i64..start {
            plan = plan.generate(p);
        }
        job.generate(&plan, false)?;
        for h in first {
            job.write_original(h.pos, &h.frame)?;
            last = Some(h.pos);
        }
    }
    while let Some(d) = job.next_frame()? {
        if let Some(l) = last
            && d.pos > l + 1
        {
            job.summary.left.push(Gap { start: l + 1, count: d.pos - l - 1 });
        }
        job.write_original(d.pos, &d.frame)?;
        last = Some(d.pos);
        history.push_back(Held { pos: d.pos, frame: d.frame, rgb: None });
        if history.len() > k {
            history.pop_front();
        }
    }
    if job.writer.is_none() {
        job.reader.finish(progress)?;
        return Err(input_err(input, "the video stream has no frames"));
    }
    if direction == Direction::Forward {
        // Check the input before spending time on the model.
        job.reader.finish(progress)?;
        let last = last.expect("a frame was written");
        let rgbs: Vec<(i64, Frame)> = history
            .iter_mut()
            .rev()
            .map(|h| { let p = h.pos; h.rgb(&mut job.conv, input).map(|f| (p, f.clone())) })
            .collect::<Result<_>>()?;
        let mut plan = Plan::new();
        for (p, f) in &rgbs {
            plan = plan.known(*p, f);
        }
        for p in last + 1..=last + n as i64 {
            plan = plan.generate(p);
        }
        job.generate(&plan, true)?;
    }
    if !job.summary.left.is_empty() {
        let missing: i64 = job.summary.left.iter().map(|g| g.count).sum();
        progress.note(&format!(
            "the input has {} gap(s) ({missing} frame(s) missing), kept as they are (`weft infill` fills them)",
            job.summary.left.len()
        ));
    }
    job.finish()
}

// ---------------------------------------------------------------- animate

/// Writes a clip of `n` frames at `fps` whose first frame is `image` (any
/// still FFmpeg reads; the first frame of a video).
#[allow(clippy::too_many_arguments)]
pub fn animate(
    model: &Model,
    image: &Path,
    output: &Path,
    n: usize,
    fps: Ratio,
    out_opts: &OutputOptions,
    genopts: &GenerateOptions,
    progress: &Progress,
) -> Result<Summary> {
    if n == 0 {
        return Err(Error::Args("animate needs at least one frame".into()));
    }
    if fps.num <= 0 || fps.as_f64() > 1000.0 {
        return Err(Error::Args(format!("frame rate must be in (0, 1000], got {fps}")));
    }
    check_new_frames(n, "animating", fps)?;
    output::check_output_path(output, out_opts.overwrite)?;
    let mut reader = Reader::open(image, false)?;
    let first = loop {
        match reader.next(progress)? {
            Some(Event::Frame(d)) => break d.frame,
            Some(Event::Packet(_)) => continue,
            None => {
                reader.finish(progress)?;
                return Err(input_err(image, "no picture could be decoded"));
            }
        }
    };
    progress.set_total(Some(n as u64));
    let grid = output::fresh_grid(fps);
    let mut conv = Converter::new();
    let still = conv.rgb_of(&first).map_err(|e| input_err(image, e))?;
    let mut writer = Writer::create(output, out_opts, &spec_for(&first, grid, 0), None, progress)?;
    writer.write_original(0, &first, progress)?;
    progress.set_done(writer.frames);
    let mut generated = 0;
    let genopts = genopts.clone().at_rate(fps.as_f64());
    let methods = run_plan(model, &Plan::animate(&still, n), &genopts, |pos, f| -> Result<()> {
        writer.write_rgb(pos, &f)?;
        generated += 1;
        progress.set_done(writer.frames);
        Ok(())
    })?;
    let summary = Summary {
        frames_in: 1,
        frames_out: writer.frames,
        generated,
        codec: writer.codec_name.clone(),
        methods,
        ..Default::default()
    };
    writer.finish()?;
    progress.finish();
    Ok(summary)
}
