//! `weft join`: the segments of a sharded job put back together, without
//! re-encoding. The video packets are copied from the segments in order,
//! their timestamps put back on the output's frame grid (the input's, or
//! with `--fps` the converted one); audio and every other stream are copied
//! from the input once, as a single run copies them. The segment of a
//! per-file shard (extend, animate) is already the whole output: it is
//! remuxed (every stream copied) to the output's name and container.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::Rational;

use super::input::Reader;
use super::output::{Muxer, add_video_stream};
use super::shard::{PlanInput, PlanJob, ShardPlan};
use super::timeline::Grid;
use super::{Error, Progress, Result, input_err};

/// A segment's video stream, opened for copying.
struct Segment {
    path: PathBuf,
    ictx: ff::format::context::Input,
    tb: Rational,
}

impl Segment {
    fn open(path: &Path) -> Result<Self> {
        let ictx = ff::format::input(&path).map_err(|e| input_err(path, format!("cannot open the segment: {}", super::input::describe(e))))?;
        let s = ictx.stream(0).filter(|s| s.parameters().medium() == ff::media::Type::Video);
        let tb = s.map(|s| s.time_base()).ok_or_else(|| input_err(path, "not a weft segment (no video stream first)"))?;
        Ok(Segment { path: path.to_path_buf(), ictx, tb })
    }

    /// The next video packet.
    fn next(&mut self) -> Result<Option<ff::Packet>> {
        loop {
            let mut p = ff::Packet::empty();
            match p.read(&mut self.ictx) {
                Ok(()) if p.stream() == 0 => return Ok(Some(p)),
                Ok(()) => continue,
                Err(ff::Error::Eof) => return Ok(None),
                Err(e) => return Err(input_err(&self.path, format!("cannot read the segment: {}", super::input::describe(e)))),
            }
        }
    }

    /// The grid position of a timestamp of this segment.
    fn pos_of(&self, grid: &Grid, ts: i64) -> i64 {
        let secs = ts as f64 * self.tb.numerator() as f64 / self.tb.denominator() as f64;
        let t0 = grid.t0 as f64 * grid.time_base.as_f64();
        ((secs - t0) * grid.rate.as_f64()).round() as i64
    }
}

/// Joins every input's segments: with one input into `out`, with several
/// into the folder `out` (created if needed), one file per input named as
/// in the plan. Returns the files written and their frame counts.
pub fn join(plan: &ShardPlan, plan_path: &Path, out: &Path, overwrite: bool, progress: &Progress) -> Result<Vec<(PathBuf, u64)>> {
    let outs: Vec<PathBuf> = if plan.inputs.len() == 1 {
        vec![out.to_path_buf()]
    } else {
        if out.exists() && !out.is_dir() {
            return Err(Error::Output {
                path: out.to_path_buf(),
                reason: format!("is a file, but a plan of {} inputs joins into a folder", plan.inputs.len()),
            });
        }
        std::fs::create_dir_all(out)
            .map_err(|e| Error::Output { path: out.to_path_buf(), reason: format!("cannot create the folder: {e}") })?;
        plan.inputs.iter().map(|i| out.join(&i.name)).collect()
    };
    // Every segment first: a missing one is named before anything is written.
    for s in &plan.shards {
        let seg = plan.segment_path(plan_path, s.index);
        if !seg.is_file() {
            let input = plan.inputs[s.input].path.display();
            let what = if plan.job.per_file() { format!("{input}") } else { format!("frames {}..{} of {input}", s.start, s.end) };
            return Err(input_err(
                &seg,
                format!(
                    "shard {} ({what}) has no segment yet: run `weft {} --plan {} --shard {}`",
                    s.index,
                    plan.job.command(),
                    plan_path.display(),
                    s.index
                ),
            ));
        }
    }
    for o in &outs {
        super::output::check_output_path(o, overwrite)?;
    }
    let mut written = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        let segs: Vec<PathBuf> = plan.shards_of(i).map(|s| plan.segment_path(plan_path, s.index)).collect();
        let input = &plan.inputs[i];
        let n = match (&plan.job, input.grid) {
            (job, _) if job.per_file() => remux(&segs[0], o, overwrite, progress)?,
            (PlanJob::Fps { rate }, Some(grid)) => {
                let grid = super::retime::out_grid(grid, *rate)?;
                join_input(input, grid, &segs, o, overwrite, progress)?
            }
            (_, Some(grid)) => join_input(input, grid, &segs, o, overwrite, progress)?,
            (_, None) => unreachable!("ShardPlan::load checks that a cut job's inputs have a grid"),
        };
        written.push((o.clone(), n));
    }
    Ok(written)
}

/// Copies every stream of `seg` (a per-file shard's whole output) to `out`,
/// in `out`'s container. Matroska keeps presentation times only: decoding
/// times are rebuilt as `join_input` rebuilds them.
fn remux(seg: &Path, out: &Path, overwrite: bool, progress: &Progress) -> Result<u64> {
    let open = || ff::format::input(&seg).map_err(|e| input_err(seg, format!("cannot open the segment: {}", super::input::describe(e))));
    let mut ictx = open()?;
    let video = ictx
        .streams()
        .best(ff::media::Type::Video)
        .map(|s| s.index())
        .ok_or_else(|| input_err(seg, "not a weft segment (no video stream)"))?;
    let read_err = |e: ff::Error| input_err(seg, format!("cannot read the segment: {}", super::input::describe(e)));
    let mut pts = Vec::new();
    loop {
        let mut p = ff::Packet::empty();
        match p.read(&mut ictx) {
            Ok(()) if p.stream() == video => pts.push(p.pts().ok_or_else(|| input_err(seg, "a video packet without a timestamp"))?),
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(read_err(e)),
        }
    }
    let mut sorted = pts.clone();
    sorted.sort_unstable();
    let delay = sorted.iter().zip(&pts).map(|(s, p)| s - p).max().unwrap_or(0);
    let mut ictx = open()?;
    let (params, tb, rate) = {
        let s = ictx.stream(video).expect("found");
        (s.parameters(), s.time_base(), s.avg_frame_rate())
    };
    let mut mux = Muxer::create(out, overwrite)?;
    check_holds(&mux, out, &params)?;
    mux.add_streams(Some((&ictx, video)), 0.0, progress, |octx| {
        add_video_stream(octx, out, ff::encoder::find(ff::codec::Id::None), params, tb, rate)
    })?;
    let mut j = 0;
    loop {
        let mut p = ff::Packet::empty();
        match p.read(&mut ictx) {
            Ok(()) if p.stream() == video => {
                let dts = sorted.get(j).ok_or_else(|| input_err(seg, "changed while it was being joined"))?;
                p.set_dts(Some(dts - delay));
                j += 1;
                mux.write_video(p, tb)?;
            }
            Ok(()) => mux.write_packet(p)?,
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(read_err(e)),
        }
    }
    mux.finish()?;
    Ok(j as u64)
}

/// An error unless `out`'s container holds the segments' video codec.
fn check_holds(mux: &Muxer, out: &Path, params: &ff::codec::Parameters) -> Result<()> {
    if mux.holds(params.id()) {
        return Ok(());
    }
    let codec = ff::decoder::find(params.id()).map(|c| c.name().to_string()).unwrap_or_else(|| format!("{:?}", params.id()));
    Err(Error::Output {
        path: out.to_path_buf(),
        reason: format!("its container cannot hold the segments' {codec} video (the plan's --codec): join to .mkv"),
    })
}

/// Timestamps of a packet in seconds, for interleaving.
fn secs(p: &ff::Packet, tb: Rational) -> f64 {
    p.dts().or(p.pts()).unwrap_or(0) as f64 * tb.numerator() as f64 / tb.denominator() as f64
}

/// Joins one input's segments, whose frames are on `grid`.
fn join_input(input: &PlanInput, grid: Grid, segs: &[PathBuf], out: &Path, overwrite: bool, progress: &Progress) -> Result<u64> {
    let tb = Rational::new(grid.time_base.num as i32, grid.time_base.den as i32);
    // Decoding delay: segments may reorder frames (B-frames), and matroska
    // keeps presentation times only. Decoding timestamps are rebuilt from the
    // sorted presentation times, held back by the largest reordering any
    // segment has, so that they rise across segment boundaries.
    let mut delay = 0i64;
    let mut last_end = None;
    for path in segs {
        let mut s = Segment::open(path)?;
        let mut pos = Vec::new();
        while let Some(p) = s.next()? {
            pos.push(s.pos_of(&grid, p.pts().ok_or_else(|| input_err(path, "a video packet without a timestamp"))?));
        }
        let mut sorted = pos.clone();
        sorted.sort_unstable();
        if let (Some(prev), Some(first)) = (last_end, sorted.first())
            && *first <= prev
        {
            return Err(input_err(path, "overlaps the segment before it: it belongs to another plan (run the shard again)"));
        }
        last_end = sorted.last().copied().or(last_end);
        delay = delay.max(sorted.iter().zip(&pos).map(|(s, p)| s - p).max().unwrap_or(0));
    }
    let mut source = Reader::open(&input.path, true)?;
    let first = Segment::open(&segs[0])?;
    let params = first.ictx.stream(0).expect("checked").parameters();
    let mut mux = Muxer::create(out, overwrite)?;
    check_holds(&mux, out, &params)?;
    let rate = Rational::new(grid.rate.num as i32, grid.rate.den as i32);
    let video = source.video;
    mux.add_streams(Some((&source.ictx, video)), 0.0, progress, |octx| {
        add_video_stream(octx, out, ff::encoder::find(ff::codec::Id::None), params, tb, rate)
    })?;
    drop(first);
    // Other streams' packets from the input, merged by time with the video.
    let mut other: Option<(ff::Packet, Rational)> = None;
    let mut source_done = false;
    let next_other = |source: &mut Reader| -> Result<Option<(ff::Packet, Rational)>> {
        loop {
            let mut p = ff::Packet::empty();
            match p.read(&mut source.ictx) {
                Ok(()) if p.stream() == video => continue,
                Ok(()) => {
                    let tb = source.ictx.stream(p.stream()).expect("demuxed").time_base();
                    return Ok(Some((p, tb)));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(e) => return Err(input_err(&input.path, format!("cannot read: {}", super::input::describe(e)))),
            }
        }
    };
    let dur = grid.frame_duration();
    let mut frames = 0u64;
    for path in segs {
        let mut s = Segment::open(path)?;
        let mut pkts = Vec::new();
        while let Some(p) = s.next()? {
            pkts.push(p);
        }
        let mut sorted: Vec<i64> = pkts.iter().map(|p| s.pos_of(&grid, p.pts().expect("checked"))).collect();
        sorted.sort_unstable();
        for (j, mut p) in pkts.into_iter().enumerate() {
            let pos = s.pos_of(&grid, p.pts().expect("checked"));
            p.set_pts(Some(grid.ts_of(pos)));
            p.set_dts(Some(grid.ts_of(sorted[j] - delay)));
            p.set_duration(dur);
            let t = secs(&p, tb);
            loop {
                if other.is_none() && !source_done {
                    other = next_other(&mut source)?;
                    source_done = other.is_none();
                }
                match other.take() {
                    Some((op, otb)) if secs(&op, otb) <= t => mux.write_packet(op)?,
                    o => {
                        other = o;
                        break;
                    }
                }
            }
            mux.write_video(p, tb)?;
            frames += 1;
        }
    }
    if let Some((op, _)) = other.take() {
        mux.write_packet(op)?;
    }
    while let Some((op, _)) = next_other(&mut source)? {
        mux.write_packet(op)?;
    }
    mux.finish()?;
    Ok(frames)
}
