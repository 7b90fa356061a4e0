//! Soak, load and live benchmarks of weftinfill (run by `scripts/soak` and
//! `scripts/bench-load`; they print figures, they assert nothing):
//!
//! * `soak stream FRAMES [WxH]`: `videotestsrc num-buffers=FRAMES !
//!   identity drop-probability=0.05 ! weftinfill ! fakesink`; resident
//!   memory (VmRSS) sampled every second, mean and max of the first and
//!   the last minute.
//! * `soak cycles N`: one such pipeline (40 frames) taken NULL -> PLAYING ->
//!   NULL N times (every other one stopped mid-stream), threads and VmRSS
//!   before and after (after two warm-up cycles).
//! * `soak live SECONDS [WxH] [SLOW_MS]`: a live `videotestsrc` through
//!   `identity drop-probability=0.05 ! weftinfill ! fakesink sync=true`;
//!   the worst delay of the source against its own schedule (how long it
//!   was blocked) against the latency weftinfill reports. SLOW_MS sets the
//!   test hook `WEFT_TEST_FILL_DELAY_MS` (generation made slower than the
//!   stream: holes are then held, `reason=late`).
//! * `soak load PIPELINES FRAMES [WxH]`: that many pipelines in this
//!   process at once (one in 20 frames dropped, the same frames in each),
//!   frames per second in all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn size(arg: Option<&String>) -> Result<(u32, u32), String> {
    let Some(a) = arg else { return Ok((160, 120)) };
    let (w, h) = a.split_once('x').ok_or_else(|| format!("size {a}: expected WxH"))?;
    Ok((w.parse().map_err(|_| format!("bad width {w}"))?, h.parse().map_err(|_| format!("bad height {h}"))?))
}

fn num<T: std::str::FromStr>(arg: Option<&String>, what: &str) -> Result<T, String> {
    let a = arg.ok_or_else(|| format!("missing {what}"))?;
    a.parse().map_err(|_| format!("bad {what}: {a}"))
}

fn caps(w: u32, h: u32) -> String {
    format!("video/x-raw,format=I420,width={w},height={h},framerate=25/1")
}

/// Plays `p` to EOS (or until `stop`), counting frames at the fakesink
/// `sink` and the `weft-fill` messages by method/reason. Recalculates the
/// latency when asked.
struct Run {
    frames: Arc<AtomicU64>,
    fills: BTreeMap<String, (u32, u32)>,
    secs: f64,
}

fn count_frames(p: &gst::Pipeline) -> Arc<AtomicU64> {
    let frames = Arc::new(AtomicU64::new(0));
    let f = frames.clone();
    let sink = p.by_name("sink").expect("fakesink named sink");
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        f.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    frames
}

fn play(p: &gst::Pipeline, frames: Arc<AtomicU64>, stop_after: Option<Duration>) -> Result<Run, String> {
    let t0 = Instant::now();
    p.set_state(gst::State::Playing).map_err(|e| format!("cannot play: {e}"))?;
    let bus = p.bus().unwrap();
    let mut fills = BTreeMap::new();
    loop {
        if stop_after.is_some_and(|s| t0.elapsed() >= s) {
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => return Err(format!("pipeline error: {}", e.error())),
            gst::MessageView::Latency(_) => {
                let _ = p.recalculate_latency();
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == gstweft::FILL_MESSAGE) {
                    let key = format!("{}/{}", s.get::<&str>("method").unwrap_or("?"), s.get::<&str>("reason").unwrap_or("?"));
                    let e = fills.entry(key).or_insert((0, 0));
                    e.0 += 1;
                    e.1 += s.get::<u32>("count").unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    Ok(Run { frames, fills, secs: t0.elapsed().as_secs_f64() })
}

fn fills_line(f: &BTreeMap<String, (u32, u32)>) -> String {
    if f.is_empty() {
        return "none".into();
    }
    f.iter().map(|(k, (n, c))| format!("{k} x{n} ({c} frames)")).collect::<Vec<_>>().join(", ")
}

fn stats(v: &[u64]) -> (f64, u64) {
    (v.iter().sum::<u64>() as f64 / v.len().max(1) as f64, v.iter().copied().max().unwrap_or(0))
}

fn stream(args: &[String]) -> Result<(), String> {
    let n: u64 = num(args.first(), "FRAMES")?;
    let (w, h) = size(args.get(1))?;
    let line = format!(
        "videotestsrc num-buffers={n} pattern=ball ! {} ! identity drop-probability=0.05 ! weftinfill name=w \
         ! fakesink name=sink sync=false",
        caps(w, h)
    );
    let p = gst::parse::launch(&line).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().unwrap();
    let frames = count_frames(&p);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done, frames) = (samples.clone(), done.clone(), frames.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let mut s = samples.lock().unwrap();
                s.push(rss_kib());
                // A line a minute, so a run cut short still tells.
                if s.len() % 60 == 0 {
                    let (m, x) = stats(&s[s.len() - 60..]);
                    println!(
                        "stream: minute {}: {} frames out, VmRSS mean {:.1} MiB max {:.1} MiB",
                        s.len() / 60,
                        frames.load(Ordering::Relaxed),
                        m / 1024.0,
                        x as f64 / 1024.0
                    );
                }
                drop(s);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let run = play(&p, frames, None)?;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    p.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    let s = samples.lock().unwrap();
    let m = s.len().min(60);
    let ((fm, fx), (lm, lx)) = (stats(&s[..m]), stats(&s[s.len() - m..]));
    let out = run.frames.load(Ordering::Relaxed);
    println!("stream: {n} frames in at {w}x{h}, {out} out in {:.1} s ({:.1} frames/s)", run.secs, out as f64 / run.secs);
    println!("stream: fills: {}", fills_line(&run.fills));
    println!(
        "stream: VmRSS first minute mean {:.1} MiB max {:.1} MiB; last minute mean {:.1} MiB max {:.1} MiB ({} samples, 1/s)",
        fm / 1024.0,
        fx as f64 / 1024.0,
        lm / 1024.0,
        lx as f64 / 1024.0,
        s.len()
    );
    Ok(())
}

fn cycles(args: &[String]) -> Result<(), String> {
    let k: usize = num(args.first(), "N")?;
    let line = format!(
        "videotestsrc num-buffers=40 pattern=ball ! {} ! identity drop-probability=0.05 ! weftinfill name=w \
         ! fakesink name=sink sync=false",
        caps(160, 120)
    );
    let p = gst::parse::launch(&line).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().unwrap();
    let frames = count_frames(&p);
    let cycle = |i: usize| -> Result<(), String> {
        frames.store(0, Ordering::Relaxed);
        if i.is_multiple_of(2) {
            play(&p, frames.clone(), None)?;
        } else {
            p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
            while frames.load(Ordering::Relaxed) < 10 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        p.set_state(gst::State::Null).map_err(|e| e.to_string())?;
        Ok(())
    };
    cycle(0)?;
    cycle(1)?;
    let (t0, r0) = (threads(), rss_kib());
    let start = Instant::now();
    for i in 2..k + 2 {
        cycle(i)?;
        if (i - 1) % 10 == 0 {
            println!("cycles: after {} cycles: threads {}, VmRSS {:.1} MiB", i - 1, threads(), rss_kib() as f64 / 1024.0);
        }
    }
    let (t1, r1) = (threads(), rss_kib());
    println!("cycles: {k} NULL->PLAYING->NULL cycles in {:.1} s", start.elapsed().as_secs_f64());
    println!("cycles: threads before {t0}, after {t1}");
    println!("cycles: VmRSS before {:.1} MiB, after {:.1} MiB ({:+.1} MiB)", r0 as f64 / 1024.0, r1 as f64 / 1024.0, (r1 as f64 - r0 as f64) / 1024.0);
    Ok(())
}

fn live(args: &[String]) -> Result<(), String> {
    let secs: u64 = num(args.first(), "SECONDS")?;
    let (w, h) = size(args.get(1))?;
    let line = format!(
        "videotestsrc name=src is-live=true pattern=ball ! {} ! identity drop-probability=0.05 ! weftinfill name=w \
         ! fakesink name=sink sync=true max-lateness=-1",
        caps(w, h)
    );
    let p = gst::parse::launch(&line).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().unwrap();
    let frames = count_frames(&p);
    // The source's delay against its own schedule, on the pipeline clock:
    // how long after its running time each buffer leaves it.
    let delays = Arc::new(Mutex::new(Vec::<i64>::new()));
    let src = p.by_name("src").unwrap();
    {
        let (delays, src2) = (delays.clone(), src.clone());
        src.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let (Some(b), Some(clock), Some(base)) = (info.buffer(), src2.clock(), src2.base_time())
                && let Some(pts) = b.pts()
            {
                let now = clock.time().nseconds() as i64;
                delays.lock().unwrap().push(now - (base + pts).nseconds() as i64);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let run = play(&p, frames, Some(Duration::from_secs(secs)))?;
    let wpad = p.by_name("w").unwrap().static_pad("src").unwrap();
    let mut q = gst::query::Latency::new();
    let ours = wpad.query(&mut q).then(|| q.result());
    let mut up = gst::query::Latency::new();
    let upstream = p.by_name("w").unwrap().static_pad("sink").unwrap().peer_query(&mut up).then(|| up.result());
    let configured = p.latency();
    p.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    let d = delays.lock().unwrap();
    let base = d.iter().copied().min().unwrap_or(0);
    let worst = d.iter().map(|x| x - base).max().unwrap_or(0);
    let mut sorted: Vec<i64> = d.iter().map(|x| x - base).collect();
    sorted.sort();
    let p99 = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0);
    let out = run.frames.load(Ordering::Relaxed);
    println!("live: {:.1} s at {w}x{h}, {} buffers from the source, {out} out", run.secs, d.len());
    println!("live: fills: {}", fills_line(&run.fills));
    println!(
        "live: source blocked at worst {:.1} ms (99th percentile {:.1} ms) beyond its usual {:.1} ms after its running time",
        worst as f64 / 1e6,
        p99 as f64 / 1e6,
        base as f64 / 1e6
    );
    if let (Some((_, min, _)), Some((_, umin, _))) = (ours, upstream) {
        println!(
            "live: weftinfill reports latency {:.1} ms (upstream {:.1} ms + its own {:.1} ms); pipeline latency {}",
            min.nseconds() as f64 / 1e6,
            umin.nseconds() as f64 / 1e6,
            (min - umin).nseconds() as f64 / 1e6,
            configured.display()
        );
    }
    Ok(())
}

fn load(args: &[String]) -> Result<(), String> {
    let k: usize = num(args.first(), "PIPELINES")?;
    let n: u64 = num(args.get(1), "FRAMES")?;
    let (w, h) = size(args.get(2))?;
    let mut ps = Vec::new();
    for _ in 0..k {
        let line = format!(
            "videotestsrc num-buffers={n} pattern=ball ! {} ! weftinfill name=w ! fakesink name=sink sync=false",
            caps(w, h)
        );
        let p = gst::parse::launch(&line).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().unwrap();
        // The same frames dropped in each: one in 20.
        p.by_name("w").unwrap().static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, |_, info| {
            match info.buffer() {
                Some(b) if b.offset() % 20 == 7 => gst::PadProbeReturn::Handled,
                _ => gst::PadProbeReturn::Ok,
            }
        });
        let f = count_frames(&p);
        p.set_state(gst::State::Paused).map_err(|e| e.to_string())?;
        ps.push((p, f));
    }
    for (p, _) in &ps {
        let _ = p.state(gst::ClockTime::from_seconds(60));
    }
    let models = gstweft::common::models_in_use();
    let t0 = Instant::now();
    let runs: Vec<Result<Run, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = ps.iter().map(|(p, f)| s.spawn(move || play(p, f.clone(), None))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut total = 0;
    for r in runs {
        total += r?.frames.load(Ordering::Relaxed);
    }
    for (p, _) in &ps {
        let _ = p.set_state(gst::State::Null);
    }
    println!(
        "load: {k} pipeline(s) at once, {n} frames each at {w}x{h} (1 in 20 generated), model(s) loaded: {models}: \
         {total} frames out in {secs:.1} s = {:.1} frames/s in all, {:.1} per pipeline",
        total as f64 / secs,
        total as f64 / secs / k as f64
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let (Some("live"), Some(ms)) = (args.first().map(String::as_str), args.get(3)) {
        // SAFETY: before any other thread exists.
        unsafe { std::env::set_var("WEFT_TEST_FILL_DELAY_MS", ms) };
    }
    gst::init().expect("gst init");
    gstweft::plugin_register_static().expect("register the weft plugin");
    let rest = args.get(1..).unwrap_or_default();
    let r = match args.first().map(String::as_str) {
        Some("stream") => stream(rest),
        Some("cycles") => cycles(rest),
        Some("live") => live(rest),
        Some("load") => load(rest),
        _ => Err("usage: soak stream FRAMES [WxH] | cycles N | live SECONDS [WxH] [SLOW_MS] | load PIPELINES FRAMES [WxH]".into()),
    };
    if let Err(e) = r {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}
