//! The frame grid of a stream: timestamps in the stream's time base mapped to
//! integer frame positions at the stream's frame rate, and the frame ranges
//! the command line takes (`--range A..B`).

use super::Error;

/// A rational number `num / den` (den > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    pub num: i64,
    pub den: i64,
}

impl Ratio {
    pub fn new(num: i64, den: i64) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
        Some(Self { num, den })
    }
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
    /// In lowest terms (25000/1000 -> 25).
    pub fn reduced(self) -> Self {
        let (mut a, mut b) = (self.num.unsigned_abs(), self.den.unsigned_abs());
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let g = a.max(1) as i64;
        Self { num: self.num / g, den: self.den / g }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 { write!(f, "{}", self.num) } else { write!(f, "{}/{}", self.num, self.den) }
    }
}

/// Rounds `n / d` to the nearest integer, halves away from zero (d > 0).
fn div_round(n: i128, d: i128) -> i128 {
    if n >= 0 { (n + d / 2) / d } else { -((-n + d / 2) / d) }
}

/// Maps timestamps (in `time_base` units) to frame positions at `rate`, with
/// position 0 at timestamp `t0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub t0: i64,
    pub time_base: Ratio,
    pub rate: Ratio,
}

impl Grid {
    /// The nearest frame position of timestamp `ts`.
    pub fn pos_of(&self, ts: i64) -> i64 {
        let n = (ts as i128 - self.t0 as i128) * self.time_base.num as i128 * self.rate.num as i128;
        let d = self.time_base.den as i128 * self.rate.den as i128;
        div_round(n, d) as i64
    }

    /// The timestamp of frame position `pos`.
    pub fn ts_of(&self, pos: i64) -> i64 {
        let n = pos as i128 * self.rate.den as i128 * self.time_base.den as i128;
        let d = self.rate.num as i128 * self.time_base.num as i128;
        (self.t0 as i128 + div_round(n, d)) as i64
    }

    /// One frame's duration in time-base units (at least 1).
    pub fn frame_duration(&self) -> i64 {
        (self.ts_of(1) - self.ts_of(0)).max(1)
    }

    /// Seconds from position 0 to `pos`.
    pub fn seconds(&self, pos: i64) -> f64 {
        pos as f64 * self.rate.den as f64 / self.rate.num as f64
    }
}

/// A run of missing frame positions: `start .. start + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub start: i64,
    pub count: i64,
}

impl Gap {
    pub fn end(&self) -> i64 {
        self.start + self.count
    }
}

/// One end of a `--range`: a frame number or a time in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Frame(i64),
    Seconds(f64),
}

/// `A..B` (B excluded) or `A..=B` (B included), each end a frame number
/// (`12`) or a time (`1.5`, `1.5s`, `0:01.5`, `1:02:03.25`). Times count from
/// the first frame of the video stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameRange {
    pub start: Bound,
    pub end: Bound,
    pub inclusive: bool,
}

impl std::str::FromStr for FrameRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Args(format!("range `{s}`: {why} (expected A..B or A..=B, frame numbers or times like 1.5s or 0:01.5)"));
        let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
            (a, b, true)
        } else if let Some((a, b)) = s.split_once("..") {
            (a, b, false)
        } else {
            return Err(bad("no `..`"));
        };
        let start = parse_bound(a.trim()).map_err(|e| bad(&e))?;
        let end = parse_bound(b.trim()).map_err(|e| bad(&e))?;
        Ok(Self { start, end, inclusive })
    }
}

fn parse_bound(s: &str) -> Result<Bound, String> {
    if s.is_empty() {
        return Err("an end is empty".into());
    }
    if !s.contains(['.', ':', 's']) {
        return s.parse::<i64>().ok().filter(|n| *n >= 0).map(Bound::Frame).ok_or_else(|| format!("`{s}` is not a frame number"));
    }
    let t = s.strip_suffix('s').unwrap_or(s);
    let mut secs = 0.0;
    for part in t.split(':') {
        let v: f64 = part.parse().map_err(|_| format!("`{s}` is not a time"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{s}` is not a time"));
        }
        secs = secs * 60.0 + v;
    }
    if t.split(':').count() > 3 {
        return Err(format!("`{s}` is not a time"));
    }
    Ok(Bound::Seconds(secs))
}

impl FrameRange {
    /// The frame positions `[start, end)` on a grid at `rate`.
    pub fn positions(&self, rate: Ratio) -> Result<(i64, i64), Error> {
        let to_pos = |b: Bound, is_end: bool| match b {
            Bound::Frame(n) => n + (is_end && self.inclusive) as i64,
            Bound::Seconds(t) => {
                let p = t * rate.as_f64();
                // A time names the frame showing at that time.
                let first = (p + 1e-9).floor() as i64;
                if is_end && !self.inclusive { (p - 1e-9).ceil() as i64 } else { first + is_end as i64 }
            }
        };
        let (a, b) = (to_pos(self.start, false), to_pos(self.end, true));
        if b < a {
            return Err(Error::Args(format!("range ends (frame {b}) before it starts (frame {a})")));
        }
        if b == a {
            return Err(Error::Args(format!("range selects no frame ({a}..{b})")));
        }
        Ok((a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_maps_both_ways() {
        let g = Grid { t0: 1024, time_base: Ratio::new(1, 12800).unwrap(), rate: Ratio::new(25, 1).unwrap() };
        assert_eq!(g.frame_duration(), 512);
        for p in [0, 1, 7, 250, 100_000] {
            assert_eq!(g.pos_of(g.ts_of(p)), p);
        }
        assert_eq!(g.pos_of(1024 + 512 * 3 + 200), 3);
        assert_eq!(g.pos_of(1024 + 512 * 3 + 300), 4);
        let ntsc = Grid { t0: 0, time_base: Ratio::new(1, 30000).unwrap(), rate: Ratio::new(30000, 1001).unwrap() };
        assert_eq!(ntsc.ts_of(3), 3003);
        assert_eq!(ntsc.pos_of(3003), 3);
        assert!((ntsc.seconds(30) - 1.001).abs() < 1e-9);
    }

    #[test]
    fn ranges_parse_frames_and_times() {
        let r25 = Ratio::new(25, 1).unwrap();
        let r: FrameRange = "10..20".parse().unwrap();
        assert_eq!(r.positions(r25).unwrap(), (10, 20));
        let r: FrameRange = "10..=20".parse().unwrap();
        assert_eq!(r.positions(r25).unwrap(), (10, 21));
        let r: FrameRange = "1s..2s".parse().unwrap();
        assert_eq!(r.positions(r25).unwrap(), (25, 50));
        let r: FrameRange = "0:01.0..=0:02".parse().unwrap();
        assert_eq!(r.positions(r25).unwrap(), (25, 51));
        let r: FrameRange = "0.5..0.62".parse().unwrap();
        assert_eq!(r.positions(r25).unwrap(), (12, 16));
        for bad in ["", "5", "a..b", "3..1", "-1..4", "1..", "1:2:3:4..5s"] {
            let parsed = bad.parse::<FrameRange>().and_then(|r| r.positions(r25));
            assert!(parsed.is_err(), "{bad:?} parsed");
        }
    }
}
