//! `weft infill` run four times at once on the same machine (each with its
//! own output, the embedded model): every output complete, at a constant
//! rate, its originals byte-identical to the input's, all four the same
//! frames as each other, no deadlock. (Throughput: `scripts/bench-load`.)

#[path = "cli_support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn four_infills_at_once_all_come_out_right() {
    let d = tempfile::tempdir().unwrap();
    let total = 60;
    let drop = [4usize, 10, 11, 23, 24, 25, 40, 51];
    let c = clip(d.path(), "holes.mkv", "160x120", total, &drop, "ffv1", false);
    let outs: Vec<_> = (0..4).map(|i| d.path().join(format!("filled-{i}.mkv"))).collect();
    let mut children: Vec<_> = outs
        .iter()
        .map(|o| {
            weft()
                .arg("infill")
                .arg(&c)
                .arg("-o")
                .arg(o)
                .args(["--codec", "ffv1", "--quiet"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start weft")
        })
        .collect();
    // A guard against a deadlock, not a time limit on the work.
    let t0 = Instant::now();
    let mut done = [None; 4];
    while done.iter().any(Option::is_none) {
        for (i, ch) in children.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = ch.try_wait().unwrap();
            }
        }
        if t0.elapsed() > Duration::from_secs(600) {
            children.iter_mut().for_each(|c| {
                let _ = c.kill();
            });
            panic!("four weft infill runs did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, (st, ch)) in done.iter().zip(children).enumerate() {
        let err = std::io::read_to_string(ch.stderr.unwrap()).unwrap();
        assert!(st.unwrap().success(), "run {i} failed: {err}");
    }
    let ins = video_md5s(&c);
    let positions: Vec<usize> = (0..total).filter(|p| !drop.contains(p)).collect();
    let first = video_md5s(&outs[0]);
    for o in &outs {
        let md5s = video_md5s(o);
        assert_eq!(md5s.len(), total, "{}: frame count", o.display());
        for (i, &p) in positions.iter().enumerate() {
            assert_eq!(md5s[p], ins[i], "{}: original frame {p} changed", o.display());
        }
        for &p in &drop {
            assert!(!ins.contains(&md5s[p]), "{}: frame {p} is a copy of an original", o.display());
        }
        assert_eq!(md5s, first, "{}: not the same frames as the first run", o.display());
        let times = video_times(o);
        for (k, t) in times.iter().enumerate() {
            assert!((t - times[0] - k as f64 / 25.0).abs() < 0.0015, "{}: frame {k} at {t} s", o.display());
        }
    }
    assert_no_output(d.path(), "nothing-else");
}
