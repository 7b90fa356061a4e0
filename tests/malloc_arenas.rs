//! Threads started after `weft::runtime::tune_allocator` share malloc's
//! arenas instead of making one each: the cap that keeps `weft infill`'s
//! resident memory flat in the clip's length (FFmpeg's decoder threads left
//! freed memory in arenas of their own: 5 KiB a frame; see
//! `tune_allocator`, and `scripts/soak` part 4 for the figures). glibc only;
//! its own process, so that no thread of another test made an arena first.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::sync::{Arc, Barrier};

/// Arenas malloc has made so far (`malloc_info` writes one `<heap nr=..>`
/// element per arena).
fn arenas() -> usize {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: open_memstream writes `buf` and `len` on fclose; the buffer
    // is malloc's and freed here once read.
    unsafe {
        let f = libc::open_memstream(&mut buf, &mut len);
        assert!(!f.is_null(), "open_memstream failed");
        assert_eq!(libc::malloc_info(0, f), 0, "malloc_info failed");
        libc::fclose(f);
        let xml = String::from_utf8_lossy(std::slice::from_raw_parts(buf as *const u8, len)).into_owned();
        libc::free(buf.cast());
        xml.matches("<heap nr=").count()
    }
}

#[test]
fn threads_share_the_capped_arenas() {
    if std::env::var_os("WEFT_KEEP_MALLOC").is_some() {
        eprintln!("WEFT_KEEP_MALLOC is set: the allocator is left alone, nothing to check");
        return;
    }
    weft::runtime::tune_allocator();
    let before = arenas();
    // Eight threads alive at once, each allocating (a thread that ended
    // would hand its arena to the next, hiding a missing cap).
    let n = 8;
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let v = std::hint::black_box(vec![i as u8; 1 << 16]);
                b.wait();
                b.wait();
                v.len()
            })
        })
        .collect();
    barrier.wait();
    let during = arenas();
    barrier.wait();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1 << 16);
    }
    // Without the cap each thread makes its own: `before + 8`.
    assert!(during <= before.max(2), "{n} threads made {} new malloc arena(s) ({before} before, {during} with them)", during - before);
}
