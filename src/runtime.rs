//! Process-level tuning for CPU inference.

use once_cell::sync::OnceCell;

static TUNED: OnceCell<()> = OnceCell::new();

/// Most malloc arenas (see [`tune_allocator`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;

/// candle allocates a fresh buffer for every tensor operation. With glibc's
/// defaults, buffers of a few MiB are served by fresh `mmap`s (and freed heap
/// tops are trimmed), so each operation page-faults its output in again: a
/// third of a forward pass went to zeroing pages. Raising the mmap threshold
/// to its maximum (32 MiB) and the trim threshold lets freed buffers be
/// reused: forward passes run about twice as fast.
///
/// Those thresholds hold for every arena, and glibc gives each new thread an
/// arena of its own (up to eight per core). The threads of FFmpeg's
/// frame-threaded decoder allocate in theirs what the caller's thread frees;
/// there the freed memory was neither trimmed nor reused: `weft infill` grew
/// by about 4.5 KiB a frame (150 -> 238 MiB over 20000 frames at 160x68)
/// with its live heap flat, all of it free memory in the decoder threads'
/// arenas (`malloc_trim` gave it back). Two arenas shared by all threads keep
/// it in use: resident memory is flat in the clip's length (149 -> 152 MiB),
/// with no measurable cost in speed. The cap covers only threads
/// started after this call (an arena, once made, lives as long as the
/// process, and a thread ending hands its arena to the next one started), so
/// programs call it before they start threads (the `weft` binary does, first
/// thing), and the ffmpeg pipeline before it opens a decoder; a model calls
/// it when it is built. Set `WEFT_KEEP_MALLOC=1` to leave the allocator alone.
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
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    });
}

/// Asks for transparent huge pages on the whole 2 MiB pages inside
/// `[ptr, ptr + bytes)` (advice only: Linux in `madvise` mode; nothing
/// elsewhere or for buffers under 4 MiB). Given before the memory is first
/// touched, its first writes fault 2 MiB pages instead of 512 times as many
/// 4 KiB ones.
pub fn advise_huge(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if bytes >= 2 * HUGE {
            let start = ptr as usize;
            let a = start.div_ceil(HUGE) * HUGE;
            let e = (start + bytes) / HUGE * HUGE;
            if e > a {
                // SAFETY: advice only, on whole pages inside the caller's allocation.
                unsafe { libc::madvise(a as *mut libc::c_void, e - a, libc::MADV_HUGEPAGE) };
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}
