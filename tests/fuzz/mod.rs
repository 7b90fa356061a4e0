//! The fuzzing harness shared by `tests/fuzz_models.rs`, `tests/fuzz_media.rs`
//! and `tests/fuzz_plans.rs`: a seeded PRNG per case, mutators for bytes,
//! JSON and safetensors files, in-process runs under `catch_unwind` and a
//! time limit, command-line runs of the built `weft` with a time limit (killed
//! on a hang), and the checks every case must pass (no panic, no hang, a clear
//! error, no `.part` file left).
//!
//! Environment:
//! * `WEFT_FUZZ_CASES`: cases per target (each file's tests have a small
//!   default, sized for CI; `scripts/fuzz` runs thousands);
//! * `WEFT_FUZZ_SEED`: the run's seed (default fixed, so CI is reproducible);
//!   case `i` of a target draws from its own stream, so a failure is replayed
//!   with the same seed and `WEFT_FUZZ_ONLY=i`;
//! * `WEFT_FUZZ_VERBOSE=1`: print every case before it runs (the last line
//!   names the case if the process itself dies) and a summary of the outcomes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

pub type Rng8 = ChaCha8Rng;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Cases per target: `WEFT_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    env_usize("WEFT_FUZZ_CASES").unwrap_or(default)
}

pub fn verbose() -> bool {
    std::env::var("WEFT_FUZZ_VERBOSE").is_ok_and(|v| v != "0" && !v.is_empty())
}

/// The run's seed (`WEFT_FUZZ_SEED`, default fixed).
pub fn seed() -> u64 {
    std::env::var("WEFT_FUZZ_SEED").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0x5eed_f00d)
}

/// Where a target's cases are written: a fresh temporary folder, or with
/// `WEFT_FUZZ_KEEP=1` a fixed one under the target dir that is kept (to
/// look at a failing case's files).
pub fn case_root(target: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    if std::env::var("WEFT_FUZZ_KEEP").is_ok_and(|v| v == "1") {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-fuzz-kept").join(target);
        std::fs::create_dir_all(&p).unwrap();
        eprintln!("fuzz {target}: keeping cases in {}", p.display());
        return (p, None);
    }
    let t = tempfile::Builder::new().prefix(&format!("weft-fuzz-{target}-")).tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    (t.path().to_path_buf(), Some(t))
}

/// Removes a case's folder unless cases are kept.
pub fn done_with(dir: &Path) {
    if !std::env::var("WEFT_FUZZ_KEEP").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The PRNG of case `i` of `target`.
pub fn case_rng(target: &str, seed: u64, i: usize) -> Rng8 {
    let mut h = crc32fast::Hasher::new();
    h.update(target.as_bytes());
    let t = h.finalize() as u64;
    ChaCha8Rng::seed_from_u64(seed ^ t.rotate_left(32) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

// ------------------------------------------------------------------ panics

thread_local! {
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that, in a fuzz case's thread, records the
/// message with its location and a short backtrace instead of printing it.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                return default(info);
            }
            let msg = payload_text(info.payload());
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let frames: Vec<&str> = bt
                .lines()
                .map(str::trim)
                .filter(|l| l.contains("weft::") && !l.contains("fuzz"))
                .take(6)
                .collect();
            let text = format!("panicked at {at}: {msg}{}", if frames.is_empty() { String::new() } else { format!(" [{}]", frames.join(" < ")) });
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// How an in-process case ended.
pub enum Outcome<T> {
    Done(T),
    Panicked(String),
    TimedOut,
}

/// Runs `f` on its own thread under `catch_unwind`, waiting at most `limit`.
/// A case that overruns is reported and left running (it cannot be killed).
pub fn guarded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Outcome<T> {
    install_hook();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("fuzz-case".into()).stack_size(32 << 20).spawn(move || {
        IN_CASE.with(|c| c.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let r = r.map_err(|p| LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_else(|| payload_text(&*p)));
        let _ = tx.send(r);
    });
    if let Err(e) = spawned {
        return Outcome::Panicked(format!("cannot start the case thread: {e}"));
    }
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(msg)) => Outcome::Panicked(msg),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Outcome::TimedOut,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Outcome::Panicked("the case thread died".into()),
    }
}

// ------------------------------------------------------------------ report

/// Cases run and failures of one target.
pub struct Tally {
    pub target: String,
    pub seed: u64,
    pub run: usize,
    pub failures: Vec<String>,
    /// Outcome kinds (the first words of each error, or `ok`), counted.
    pub outcomes: BTreeMap<String, usize>,
    started: Instant,
}

impl Tally {
    pub fn new(target: &str) -> Self {
        Tally { target: target.into(), seed: seed(), run: 0, failures: vec![], outcomes: BTreeMap::new(), started: Instant::now() }
    }

    /// Whether case `i` is to run (`WEFT_FUZZ_ONLY` picks one).
    pub fn selected(&self, i: usize) -> bool {
        env_usize("WEFT_FUZZ_ONLY").is_none_or(|o| o == i)
    }

    pub fn start(&mut self, i: usize, what: &str) {
        self.run += 1;
        if verbose() {
            eprintln!("[{}] case {i}: {what}", self.target);
        }
    }

    pub fn outcome(&mut self, kind: &str) {
        *self.outcomes.entry(kind.to_string()).or_default() += 1;
    }

    pub fn fail(&mut self, i: usize, what: &str, why: &str) {
        let line = format!("[{}] case {i} (WEFT_FUZZ_SEED={} WEFT_FUZZ_ONLY={i}): {what}: {why}", self.target, self.seed);
        eprintln!("FUZZ FAILURE {line}");
        self.failures.push(line);
        self.outcome("FAILURE");
    }

    /// Prints the summary line (`scripts/fuzz` adds these up) and fails the
    /// test if any case failed.
    pub fn finish(self) {
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "fuzz {}: {} cases, {} failures ({secs:.1} s, WEFT_FUZZ_SEED={})",
            self.target,
            self.run,
            self.failures.len(),
            self.seed
        );
        if verbose() {
            for (k, n) in &self.outcomes {
                eprintln!("  {n:6}  {k}");
            }
        }
        // Also to a file for scripts/fuzz (test output may be captured).
        if let Ok(dir) = std::env::var("WEFT_FUZZ_REPORT_DIR") {
            let _ = std::fs::create_dir_all(&dir);
            let body = format!("{} {} {}\n{}", self.target, self.run, self.failures.len(), self.failures.join("\n"));
            let _ = std::fs::write(Path::new(&dir).join(format!("{}.txt", self.target)), body);
        }
        assert!(self.failures.is_empty(), "{} of {} fuzz cases failed:\n{}", self.failures.len(), self.run, self.failures.join("\n"));
    }
}

/// A short class for an error message: its text with numbers, paths and
/// quoted names blanked, cut at 70 characters (for the outcome counts).
pub fn kind_of(msg: &str) -> String {
    let mut out = String::new();
    let mut in_tick = false;
    for w in msg.split_whitespace() {
        if w.contains('/') || w.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("# ");
            continue;
        }
        if let Some(rest) = w.strip_prefix('`') {
            in_tick = !rest.contains('`');
            out.push_str("`_` ");
            continue;
        }
        if in_tick {
            if w.contains('`') {
                in_tick = false;
            }
            continue;
        }
        out.push_str(w);
        out.push(' ');
    }
    out.chars().take(70).collect::<String>().trim().to_string()
}

/// The message without the backtrace candle appends to its errors when
/// `RUST_BACKTRACE` is set (asked for, so not held against the message).
pub fn strip_backtrace(msg: &str) -> &str {
    match msg.find("\n   0: ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// What makes an error message unclear: empty, several lines, very long,
/// or a Rust-level failure leaking through.
pub fn unclear(msg: &str) -> Option<String> {
    let m = strip_backtrace(msg).trim();
    if m.is_empty() {
        return Some("empty error message".into());
    }
    if m.contains('\n') {
        return Some(format!("error message of several lines: {m:?}"));
    }
    if m.len() > 1500 {
        return Some(format!("error message of {} characters", m.len()));
    }
    for bad in ["panicked", "RUST_BACKTRACE", "called `Option::unwrap()`", "called `Result::unwrap()`", "stack backtrace"] {
        if m.contains(bad) {
            return Some(format!("error message shows a Rust failure: {m:?}"));
        }
    }
    None
}

// ---------------------------------------------------------------- mutators

/// A position in `0..len`, half the time within the first KiB (headers).
pub fn pos(rng: &mut Rng8, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    if rng.random_bool(0.5) { rng.random_range(0..len.min(1024)) } else { rng.random_range(0..len) }
}

const INTERESTING: [u8; 9] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0x22, 0x7b, 0x7d];

/// One to three byte-level mutations: bit flips, interesting bytes, random
/// runs, truncation, deletion, duplication, insertion, zeroing, and splices
/// with a donor (its head before our tail, or our head before its tail).
/// Returns a description.
pub fn mutate_bytes(rng: &mut Rng8, data: &mut Vec<u8>, donors: &[&[u8]]) -> String {
    let n = rng.random_range(1..=3);
    let mut what = vec![];
    for _ in 0..n {
        what.push(mutate_bytes_once(rng, data, donors));
    }
    what.join(", ")
}

fn mutate_bytes_once(rng: &mut Rng8, data: &mut Vec<u8>, donors: &[&[u8]]) -> String {
    let len = data.len();
    if len == 0 {
        data.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>()));
        return "filled an empty file".into();
    }
    match rng.random_range(0..12) {
        11 => {
            // A number field made huge: a protobuf varint, little-endian
            // u32/u64 maxima, an EBML size, a big decimal.
            const SEQS: [&[u8]; 6] = [
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                &[0xff, 0xff, 0xff, 0xff],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                &[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
                b"99999999999999999999",
                &[0x80, 0x80, 0x80, 0x80, 0x10],
            ];
            let seq = SEQS[rng.random_range(0..SEQS.len())];
            let at = pos(rng, len);
            if rng.random_bool(0.5) {
                let end = (at + seq.len()).min(len);
                data.splice(at..end, seq.iter().copied());
                format!("huge number written at {at}")
            } else {
                data.splice(at..at, seq.iter().copied());
                format!("huge number inserted at {at}")
            }
        }
        0 | 1 => {
            let k = rng.random_range(1..=8);
            for _ in 0..k {
                let p = pos(rng, len);
                data[p] ^= 1 << rng.random_range(0..8);
            }
            format!("{k} bit flip(s)")
        }
        2 => {
            let p = pos(rng, len);
            data[p] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            format!("byte {p} set")
        }
        3 => {
            let p = pos(rng, len);
            let k = rng.random_range(1..=16).min(len - p);
            for b in &mut data[p..p + k] {
                *b = rng.random();
            }
            format!("{k} random bytes at {p}")
        }
        4 => {
            let keep = if rng.random_bool(0.3) { pos(rng, len) } else { rng.random_range(0..len) };
            data.truncate(keep);
            format!("truncated to {keep} of {len}")
        }
        5 => {
            let p = pos(rng, len);
            let k = rng.random_range(1..=64.min(len - p).max(1)).min(len - p);
            data.drain(p..p + k);
            format!("{k} bytes deleted at {p}")
        }
        6 => {
            let p = pos(rng, len);
            let k = rng.random_range(1..=256).min(len - p);
            let chunk = data[p..p + k].to_vec();
            let at = pos(rng, len);
            data.splice(at..at, chunk);
            format!("{k} bytes from {p} duplicated at {at}")
        }
        7 => {
            let at = pos(rng, len);
            let k = rng.random_range(1..=32);
            let chunk: Vec<u8> = (0..k).map(|_| rng.random()).collect();
            data.splice(at..at, chunk);
            format!("{k} random bytes inserted at {at}")
        }
        8 => {
            let p = pos(rng, len);
            let k = rng.random_range(1..=512).min(len - p);
            data[p..p + k].fill(0);
            format!("{k} bytes zeroed at {p}")
        }
        _ => {
            let Some(d) = (!donors.is_empty()).then(|| donors[rng.random_range(0..donors.len())]).filter(|d| !d.is_empty())
            else {
                data.truncate(len / 2);
                return "halved".into();
            };
            if rng.random_bool(0.5) {
                // A donor's header spliced in front of our body.
                let a = pos(rng, d.len());
                let b = pos(rng, len);
                let mut out = d[..a].to_vec();
                out.extend_from_slice(&data[b..]);
                *data = out;
                format!("donor head ..{a} + own tail {b}..")
            } else {
                let a = pos(rng, len);
                let b = rng.random_range(0..d.len());
                data.truncate(a);
                data.extend_from_slice(&d[b..]);
                format!("own head ..{a} + donor tail {b}..")
            }
        }
    }
}

/// Values that break assumptions.
fn interesting_value(rng: &mut Rng8, like: &Value) -> Value {
    let nums: [Value; 20] = [
        json!(0),
        json!(1),
        json!(-1),
        json!(2),
        json!(3),
        json!(7),
        json!(64),
        json!(65535),
        json!(1u64 << 31),
        json!((1u64 << 32) + 1),
        json!(1u64 << 53),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e18),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(-0.0),
        json!(1e-300),
        json!(100000),
    ];
    let strs = ["", "x", "rife", "f16", "bf16", "f64", "i64", "noise", "blend", "LTXPipeline", "rms_norm", "conv", "NaN", "Infinity"];
    match (like, rng.random_range(0..10)) {
        (Value::Number(n), 0..=5) => {
            let k = rng.random_range(0..6);
            match (n.as_i64(), n.as_f64().unwrap_or(0.0)) {
                (_, _) if k == 5 => nums[rng.random_range(0..nums.len())].clone(),
                (Some(i), _) => json!([i.saturating_mul(2), i.saturating_add(1), i.saturating_sub(1), i.saturating_neg(), i / 2][k]),
                (None, f) => json!([f * 2.0, f + 1.0, f - 1.0, -f, f / 2.0][k]),
            }
        }
        (Value::String(_), 0..=4) => json!(strs[rng.random_range(0..strs.len())]),
        (Value::Bool(b), 0..=4) => json!(!b),
        (Value::Array(a), 0..=4) if !a.is_empty() => {
            let mut a = a.clone();
            match rng.random_range(0..3) {
                0 => {
                    a.pop();
                }
                1 => a.push(a[rng.random_range(0..a.len())].clone()),
                _ => a.clear(),
            }
            Value::Array(a)
        }
        _ => match rng.random_range(0..8) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!([]),
            3 => json!({}),
            4 => json!(strs[rng.random_range(0..strs.len())]),
            5 => json!([1, 2]),
            _ => nums[rng.random_range(0..nums.len())].clone(),
        },
    }
}

/// JSON pointers of every node of `v` (not the root).
fn paths(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                paths(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                paths(c, p, out);
            }
        }
        _ => {}
    }
}

fn parent_and_key(p: &str) -> (&str, String) {
    let i = p.rfind('/').expect("a child pointer");
    (&p[..i], p[i + 1..].replace("~1", "/").replace("~0", "~"))
}

/// One to three structural mutations of a JSON document (a value changed to
/// an interesting one or another type, a key removed or added, an array
/// shortened or lengthened); otherwise (or when it does not parse) bytes.
pub fn mutate_json(rng: &mut Rng8, text: &[u8]) -> (Vec<u8>, String) {
    let parsed: Option<Value> = serde_json::from_slice(text).ok();
    let Some(mut v) = parsed.filter(|_| rng.random_bool(0.85)) else {
        let mut b = text.to_vec();
        let d = mutate_bytes(rng, &mut b, &[]);
        return (b, format!("json bytes: {d}"));
    };
    let d = mutate_value(rng, &mut v);
    let out = if rng.random_bool(0.5) { serde_json::to_vec(&v) } else { serde_json::to_vec_pretty(&v) }.expect("serialises");
    (out, format!("json: {d}"))
}

/// Structural mutations of a JSON value in place; returns a description.
pub fn mutate_value(rng: &mut Rng8, v: &mut Value) -> String {
    let n = rng.random_range(1..=3);
    let mut what = vec![];
    for _ in 0..n {
        let mut all = vec![];
        paths(v, String::new(), &mut all);
        if all.is_empty() {
            *v = interesting_value(rng, v);
            what.push("root replaced".to_string());
            continue;
        }
        let p = all[rng.random_range(0..all.len())].clone();
        match rng.random_range(0..10) {
            0..=5 => {
                let old = v.pointer(&p).cloned().unwrap_or(Value::Null);
                let new = interesting_value(rng, &old);
                what.push(format!("{p}: {} -> {}", short(&old), short(&new)));
                *v.pointer_mut(&p).expect("path") = new;
            }
            6 | 7 => {
                let (parent, key) = parent_and_key(&p);
                match v.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&key);
                    }
                    Some(Value::Array(a)) => {
                        let i: usize = key.parse().expect("index");
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
                what.push(format!("{p} removed"));
            }
            8 => {
                let (parent, _) = parent_and_key(&p);
                let val = interesting_value(rng, &Value::Null);
                let target = if matches!(v.pointer(parent), Some(Value::Object(_))) { parent } else { "" };
                if let Some(Value::Object(m)) = v.pointer_mut(target) {
                    m.insert("zz_fuzz_extra".into(), val);
                    what.push(format!("{target}/zz_fuzz_extra added"));
                }
            }
            _ => {
                // Another node's value copied here.
                let q = all[rng.random_range(0..all.len())].clone();
                if !q.starts_with(&p) && !p.starts_with(&q) {
                    let val = v.pointer(&q).cloned().unwrap_or(Value::Null);
                    *v.pointer_mut(&p).expect("path") = val;
                    what.push(format!("{p} <- {q}"));
                }
            }
        }
    }
    what.join("; ")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", &s[..s.char_indices().nth(37).map_or(s.len(), |c| c.0)]) } else { s }
}

/// A safetensors file split into its header map and data.
pub fn split_safetensors(b: &[u8]) -> Option<(Map<String, Value>, &[u8])> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let h = b.get(8..8usize.checked_add(n)?)?;
    let map: Map<String, Value> = serde_json::from_slice(h).ok()?;
    Some((map, &b[8 + n..]))
}

pub fn join_safetensors(header: &Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let mut text = serde_json::to_string(header).expect("serialises");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

const DTYPES: [&str; 12] = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "I8", "BOOL", "F8_E4M3", "U64", "X9"];

/// A safetensors-aware mutation: a tensor's dtype, shape, offsets or name,
/// an entry removed or duplicated, the metadata (the checksum) changed, the
/// header length field off, bits of the data flipped; else bytes.
pub fn mutate_safetensors(rng: &mut Rng8, bytes: &[u8], donors: &[&[u8]]) -> (Vec<u8>, String) {
    let Some((mut h, data)) = split_safetensors(bytes).filter(|_| rng.random_bool(0.7)) else {
        let mut b = bytes.to_vec();
        let d = mutate_bytes(rng, &mut b, donors);
        return (b, format!("safetensors bytes: {d}"));
    };
    let mut data = data.to_vec();
    let names: Vec<String> = h.keys().filter(|k| *k != "__metadata__").cloned().collect();
    if names.is_empty() {
        let mut b = bytes.to_vec();
        let d = mutate_bytes(rng, &mut b, donors);
        return (b, format!("safetensors bytes: {d}"));
    }
    let name = names[rng.random_range(0..names.len())].clone();
    let what = match rng.random_range(0..12) {
        0 => {
            let d = DTYPES[rng.random_range(0..DTYPES.len())];
            h[&name]["dtype"] = json!(d);
            format!("`{name}` dtype -> {d}")
        }
        1 | 2 => {
            let shape = h[&name]["shape"].as_array().cloned().unwrap_or_default();
            let mut s: Vec<Value> = shape;
            match rng.random_range(0..5) {
                0 if !s.is_empty() => {
                    let i = rng.random_range(0..s.len());
                    s[i] = json!(s[i].as_u64().unwrap_or(1) + 1);
                }
                1 if !s.is_empty() => {
                    let i = rng.random_range(0..s.len());
                    s[i] = json!(0);
                }
                2 => s.push(json!(1)),
                3 if !s.is_empty() => {
                    s.pop();
                }
                _ => {
                    let v = [u64::MAX, 1 << 40, 1 << 62, 3];
                    s.push(json!(v[rng.random_range(0..v.len())]));
                }
            }
            let d = format!("`{name}` shape -> {}", Value::Array(s.clone()));
            h[&name]["shape"] = Value::Array(s);
            d
        }
        3 | 4 => {
            let o = h[&name]["data_offsets"].as_array().cloned().unwrap_or_default();
            let (a, b) = (o.first().and_then(Value::as_u64).unwrap_or(0), o.get(1).and_then(Value::as_u64).unwrap_or(0));
            let new = match rng.random_range(0..5) {
                0 => json!([b, a]),
                1 => json!([a + 1, b + 1]),
                2 => json!([a, b.saturating_sub(4)]),
                3 => json!([a, u64::MAX]),
                _ => json!([0, b - a]),
            };
            let d = format!("`{name}` offsets -> {new}");
            h[&name]["data_offsets"] = new;
            d
        }
        5 => {
            let v = h.remove(&name).expect("present");
            let new = format!("{name}x");
            h.insert(new.clone(), v);
            format!("`{name}` renamed `{new}`")
        }
        6 => {
            h.remove(&name);
            format!("`{name}` removed from the header")
        }
        7 => {
            let v = h[&name].clone();
            h.insert(format!("zz.{name}"), v);
            format!("`{name}` listed twice")
        }
        8 => match h.get_mut("__metadata__") {
            Some(Value::Object(m)) if !m.is_empty() && rng.random_bool(0.7) => {
                let k = m.keys().next().cloned().expect("non-empty");
                let mut val = Value::String(m[&k].as_str().unwrap_or("").to_string());
                let d = mutate_value(rng, &mut val);
                m.insert(k.clone(), val);
                format!("metadata `{k}`: {d}")
            }
            _ => {
                if rng.random_bool(0.5) {
                    h.remove("__metadata__");
                    "metadata removed".into()
                } else {
                    h.insert("__metadata__".into(), json!({"weft.crc32": 5}));
                    "metadata not a string map".into()
                }
            }
        },
        9 => {
            // The header length field off by a little or a lot.
            let mut b = join_safetensors(&h, &data);
            let n = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let new = match rng.random_range(0..5) {
                0 => n + 1,
                1 => n.saturating_sub(1),
                2 => n + 8,
                3 => 0,
                _ => u64::MAX - rng.random_range(0..16),
            };
            b[..8].copy_from_slice(&new.to_le_bytes());
            return (b, format!("header length {n} -> {new}"));
        }
        10 => {
            if data.is_empty() {
                data.push(0);
            } else {
                let k = rng.random_range(1..=4);
                for _ in 0..k {
                    let p = rng.random_range(0..data.len());
                    data[p] ^= 1 << rng.random_range(0..8);
                }
            }
            "data bits flipped".into()
        }
        _ => {
            let mut v = Value::Object(h.clone());
            let d = mutate_value(rng, &mut v);
            match v {
                Value::Object(m) => h = m,
                other => {
                    let mut b = (other.to_string().len() as u64).to_le_bytes().to_vec();
                    b.extend_from_slice(other.to_string().as_bytes());
                    b.extend_from_slice(&data);
                    return (b, format!("header replaced by a non-object: {d}"));
                }
            }
            format!("header json: {d}")
        }
    };
    (join_safetensors(&h, &data), what)
}

/// Mutates a file by its kind (JSON, safetensors, other); returns a description.
pub fn mutate_file(rng: &mut Rng8, path: &Path, donors: &[&[u8]]) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (out, d) = if name.ends_with(".json") {
        mutate_json(rng, &bytes)
    } else if name.ends_with(".safetensors") {
        mutate_safetensors(rng, &bytes, donors)
    } else {
        let mut b = bytes.clone();
        let d = mutate_bytes(rng, &mut b, donors);
        (b, d)
    };
    std::fs::write(path, out).expect("write the mutated file");
    format!("{name}: {d}")
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Temporary files a job left in `dir` (weft writes `.NAME.weft-PID.part`
/// for videos and `NAME.tmpPID` for model files).
pub fn litter(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for p in files_under(dir) {
        let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if n.ends_with(".part") || n.contains(".weft-") || n.contains(".tmp") {
            out.push(n);
        }
    }
    out
}

// --------------------------------------------------------------------- CLI

/// How a command-line run ended.
pub struct Run {
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub secs: f64,
}

/// The built `weft` binary, with a memory limit (so that a runaway
/// allocation fails in the child instead of swamping the machine).
pub fn weft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.env("RUST_BACKTRACE", "1");
    limit_child_memory(&mut c, 8 << 30);
    c
}

pub fn limit_child_memory(c: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
}

/// Runs `cmd` for at most `limit`; on a hang, SIGTERM (weft removes its
/// temporary output), then SIGKILL two seconds later.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Run {
    let t0 = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start weft");
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let ro = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let re = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if t0.elapsed() > limit {
            timed_out = true;
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let t1 = Instant::now();
            while t1.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&ro.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&re.join().unwrap_or_default()).into_owned();
    Run { status, timed_out, stdout, stderr, secs: t0.elapsed().as_secs_f64() }
}

/// What is wrong with a finished run that failed: a hang, a crash, a panic,
/// or not exactly one clear error line. `Ok(line)`: the error line.
pub fn check_failed_run(r: &Run) -> Result<String, String> {
    if r.timed_out {
        return Err(format!("hang: still running after {:.0} s (stderr: {})", r.secs, tail(&r.stderr)));
    }
    if r.stderr.contains("panicked") {
        return Err(format!("panic: {}", tail(&r.stderr)));
    }
    let Some(status) = r.status else { return Err("no exit status".into()) };
    if status.code().is_none() {
        use std::os::unix::process::ExitStatusExt;
        return Err(format!("crash: killed by signal {:?} (stderr: {})", status.signal(), tail(&r.stderr)));
    }
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| (l.starts_with("weft: ") && !l.starts_with("weft: warning") && !l.starts_with("weft: wrote")) || l.starts_with("error:"))
        .collect();
    if errors.len() != 1 {
        return Err(format!("{} error lines (want one): {}", errors.len(), tail(&r.stderr)));
    }
    let line = errors[0].to_string();
    if let Some(why) = unclear(&line) {
        return Err(why);
    }
    if line.trim() == "weft:" || line.trim_start_matches("weft: ").trim().len() < 8 {
        return Err(format!("error line says nothing: {line:?}"));
    }
    // A library's bare error string as the whole reason says nothing about
    // what is wrong with the input (or blames the wrong file).
    const BARE: [&str; 10] = [
        "Invalid argument",
        "Input/output error",
        "Cannot allocate memory",
        "Unknown error occurred",
        "Bug detected, please report the issue",
        "Not yet implemented in FFmpeg, patches welcome",
        "Decoder not found",
        "Operation not permitted",
        "Resource temporarily unavailable",
        "Invalid data found when processing input",
    ];
    if let Some(b) = BARE.iter().find(|b| line.trim_end().ends_with(*b)) {
        return Err(format!("error line gives only the bare library message {b:?}: {line:?}"));
    }
    Ok(line)
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let t = lines[lines.len().saturating_sub(6)..].join(" | ");
    let n = t.chars().count();
    if n > 1200 { t.chars().skip(n - 1200).collect() } else { t }
}

