//! Opt-in wall-clock breakdown of the LTX-Video transformer's work
//! (`WEFT_LTX_PROFILE=1`), for benchmarks: each [`scope`] adds the time until
//! its guard drops to its label; [`report`] lists the totals. Off (one relaxed
//! load per scope) unless the variable is set when the first scope opens.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static TOTALS: Mutex<Vec<(&'static str, f64, u64)>> = Mutex::new(Vec::new());

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEFT_LTX_PROFILE").is_some_and(|v| v != "0"))
}

/// Times until dropped (nothing when profiling is off).
#[must_use]
pub struct Scope(Option<(&'static str, Instant)>);

pub fn scope(label: &'static str) -> Scope {
    Scope(enabled().then(|| (label, Instant::now())))
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((label, t)) = self.0.take() {
            let s = t.elapsed().as_secs_f64();
            let mut v = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
            match v.iter_mut().find(|e| e.0 == label) {
                Some(e) => {
                    e.1 += s;
                    e.2 += 1;
                }
                None => v.push((label, s, 1)),
            }
        }
    }
}

/// (label, seconds, calls), most time first; empties the totals.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    let mut v = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}
