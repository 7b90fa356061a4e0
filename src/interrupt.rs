//! Interruption: SIGINT, SIGTERM and SIGHUP end a command-line job without
//! leaving litter.
//!
//! Files a job writes under a temporary name register themselves here
//! ([`TempPath`]). [`install`] (the `weft` binary calls it; a library user
//! decides for itself) starts a thread that waits for the three signals with
//! `signal-hook`. On the first one it removes every registered temporary
//! file, prints one line saying nothing was written, and exits with the
//! shell's code for that signal (130, 143, 129). Moving a finished file into
//! place ([`TempPath::commit`]) holds the same lock, so an interrupted job
//! either has its output complete under its final name or not at all. A
//! second signal while the first is being handled exits at once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static REGISTRY: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn registry() -> std::sync::MutexGuard<'static, Vec<(u64, PathBuf)>> {
    // A panic while holding the lock leaves a plain Vec: still usable.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file written under a temporary name: removed when dropped (an error or
/// a signal) unless [`TempPath::commit`] moved it into place.
#[derive(Debug)]
pub struct TempPath {
    id: u64,
    path: PathBuf,
    live: bool,
}

impl TempPath {
    /// Registers `path` (which may not exist yet) for removal on interruption.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        registry().push((id, path.clone()));
        TempPath { id, path, live: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `finish` (which moves the file to its final name, e.g. a rename)
    /// with interruption held off, and forgets the temporary on success. On
    /// failure the temporary stays registered and is removed on drop.
    pub fn commit<T, E>(mut self, finish: impl FnOnce(&Path) -> Result<T, E>) -> Result<T, E> {
        let mut reg = registry();
        let r = finish(&self.path)?;
        reg.retain(|(id, _)| *id != self.id);
        drop(reg);
        // A hard link leaves the temporary name behind: remove it.
        let _ = std::fs::remove_file(&self.path);
        self.live = false;
        Ok(r)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let mut reg = registry();
        if self.live {
            let _ = std::fs::remove_file(&self.path);
        }
        reg.retain(|(id, _)| *id != self.id);
    }
}

/// The exit status a shell reports for a process ended by `signal`.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The signal's usual name.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Removes every registered temporary file; returns how many there were.
/// Keeps the registry locked until the process exits (no commit can start).
fn clean_up_and_exit(signal: i32) -> ! {
    use std::io::{IsTerminal, Write};
    let mut reg = registry();
    let n = reg.len();
    for (_, p) in reg.drain(..) {
        let _ = std::fs::remove_file(&p);
    }
    let mut err = std::io::stderr().lock();
    // Start on a fresh line when a progress bar may be showing.
    let lead = if std::io::stderr().is_terminal() { "\n" } else { "" };
    let what = if n > 0 { "the unfinished output was removed, nothing was written" } else { "nothing was written" };
    let _ = writeln!(err, "{lead}weft: interrupted by {}: {what}", signal_name(signal));
    let _ = err.flush();
    // _exit: no atexit handlers or destructors of other threads' state,
    // which could block a process that is being asked to stop.
    unsafe { libc::_exit(exit_code(signal)) }
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (once per process).
pub fn install() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("weft-signals".into()).spawn(move || {
        let mut first = true;
        for signal in signals.forever() {
            if first {
                first = false;
                std::thread::Builder::new()
                    .name("weft-cleanup".into())
                    .spawn(move || clean_up_and_exit(signal))
                    .unwrap_or_else(|_| clean_up_and_exit(signal));
            } else {
                // A second signal: stop now, whatever the first is waiting
                // on (removing the temporaries if nothing holds them; if the
                // first's clean-up does, it has a moment to finish).
                match REGISTRY.try_lock() {
                    Ok(reg) => {
                        for (_, p) in reg.iter() {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
                unsafe { libc::_exit(exit_code(signal)) }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_temp_path_is_removed_and_a_committed_one_moves() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join(".a.part");
        std::fs::write(&a, b"x").unwrap();
        drop(TempPath::new(&a));
        assert!(!a.exists());
        assert!(!registry().iter().any(|(_, p)| p == &a));

        let b = dir.path().join(".b.part");
        std::fs::write(&b, b"y").unwrap();
        let t = TempPath::new(&b);
        let out = dir.path().join("b");
        t.commit(|p| std::fs::rename(p, &out)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"y");
        assert!(!registry().iter().any(|(_, p)| p == &b));
    }

    #[test]
    fn a_failed_commit_keeps_the_temporary_registered_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join(".c.part");
        std::fs::write(&a, b"x").unwrap();
        let t = TempPath::new(&a);
        let id = t.id;
        let r: Result<(), &str> = t.commit(|_| Err("no"));
        assert!(r.is_err());
        // commit consumed it: dropped on the error path, so removed.
        assert!(!a.exists());
        assert!(!registry().iter().any(|(i, _)| *i == id));
    }
}
