//! Process-level tuning for CPU inference.

use once_cell::sync::OnceCell;

static TUNED: OnceCell<()> = OnceCell::new();

/// candle allocates a fresh buffer for every tensor operation. With glibc's
/// defaults, buffers of a few MiB are served by fresh `mmap`s (and freed heap
/// tops are trimmed), so each operation page-faults its output in again: a
/// third of a forward pass went to zeroing pages. Raising the mmap threshold
/// to its maximum (32 MiB) and the trim threshold lets freed buffers be
/// reused: forward passes run about twice as fast. Called once when the
/// first model is built; set `WEFT_KEEP_MALLOC=1` to leave the allocator alone.
pub fn tune_allocator() {
    TUNED.get_or_init(|| {
        if std::env::var_os("WEFT_KEEP_MALLOC").is_some() {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc malloc parameters; it is
        // thread-safe and takes plain integers.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}
