//! Demuxing and decoding: the input's video stream as decoded frames at
//! positions on the frame grid, interleaved with the packets of every other
//! stream (to copy). Corrupt data in the middle of a file is skipped with a
//! warning; the frames lost there show up as holes in the grid.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::codec;
use ff::format::context::Input as FormatInput;
use ff::media;
use ff::util::frame::Video;

use super::timeline::{Grid, Ratio};
use super::{Error, Progress};

/// A decoded frame of the video stream.
pub(crate) struct Decoded {
    /// Position on the frame grid.
    pub pos: i64,
    pub frame: Video,
}

pub(crate) enum Event {
    Frame(Decoded),
    /// A packet of another stream (its input stream index is `packet.stream()`).
    Packet(ff::Packet),
}

pub(crate) struct Reader {
    pub path: PathBuf,
    pub ictx: FormatInput,
    pub video: usize,
    pub time_base: Ratio,
    pub rate: Ratio,
    decoder: ff::decoder::Video,
    grid: Option<Grid>,
    keep_other: bool,
    queue: VecDeque<Event>,
    eof_sent: bool,
    done: bool,
    last_pos: Option<i64>,
    last_ts: Option<i64>,
    /// Frames decoded and handed out.
    pub frames: u64,
    /// Frames dropped because they fell on an already-used grid position.
    pub dropped_same_slot: u64,
    corrupt_events: u64,
    corrupt_warnings: u64,
    pending_corrupt: Option<String>,
    read_error: Option<String>,
}

fn input_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input { path: path.to_path_buf(), reason: reason.into() }
}

/// An ffmpeg error in plain words.
pub(crate) fn describe(e: ff::Error) -> String {
    match e {
        ff::Error::InvalidData => "invalid data (corrupt, truncated, or not a format FFmpeg reads)".into(),
        ff::Error::Eof => "unexpected end of file (empty or truncated)".into(),
        e => e.to_string(),
    }
}

/// An ffmpeg error reading an input, in plain words: demuxers report a
/// cut-off structure as an I/O error, and a damaged header can ask for more
/// memory than any video needs.
fn describe_read(e: ff::Error) -> String {
    match e {
        ff::Error::Other { errno: libc::EIO } => "input/output error (truncated or damaged?)".into(),
        ff::Error::Other { errno: libc::ENOMEM } => "cannot allocate memory (a damaged header asking for too much?)".into(),
        ff::Error::PatchWelcome => "uses a feature FFmpeg does not support (or is damaged)".into(),
        ff::Error::Other { errno: libc::EINVAL } => "invalid argument (damaged stream parameters?)".into(),
        e => describe(e),
    }
}

impl Reader {
    /// Opens `path` and its best video stream. `keep_other`: hand out the
    /// packets of other streams (else they are dropped at once).
    pub fn open(path: &Path, keep_other: bool) -> Result<Self, Error> {
        super::init();
        if let Err(e) = std::fs::metadata(path) {
            return Err(input_err(path, format!("cannot read: {e}")));
        }
        if path.is_dir() {
            return Err(input_err(path, "is a directory, not a video file"));
        }
        let ictx = ff::format::input(&path).map_err(|e| input_err(path, format!("cannot open: {}", describe_read(e))))?;
        let stream = ictx
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Video)
            .filter(|s| !s.disposition().contains(ff::format::stream::Disposition::ATTACHED_PIC))
            .max_by_key(|s| {
                let p = unsafe { &*s.parameters().as_ptr() };
                (p.width as i64) * (p.height as i64)
            })
            .ok_or_else(|| input_err(path, "no video stream"))?;
        let video = stream.index();
        let tb = stream.time_base();
        let time_base = Ratio::new(tb.numerator() as i64, tb.denominator() as i64)
            .filter(|r| r.num > 0)
            .ok_or_else(|| input_err(path, "the video stream has no time base"))?;
        let sane = |r: ff::Rational| {
            Ratio::new(r.numerator() as i64, r.denominator() as i64).filter(|r| r.num > 0 && r.as_f64() > 0.1 && r.as_f64() <= 1000.0)
        };
        let rate = sane(stream.rate())
            .or_else(|| sane(stream.avg_frame_rate()))
            .ok_or_else(|| input_err(path, "cannot tell the video stream's frame rate"))?;
        let mut ctx = codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| input_err(path, format!("video stream: {}", describe_read(e))))?;
        ctx.set_threading(codec::threading::Config { kind: codec::threading::Type::Frame, count: 0, ..Default::default() });
        unsafe {
            (*ctx.as_mut_ptr()).pkt_timebase = tb.into();
            // Damaged data is an error (the frame is lost, then regenerated),
            // not a concealed frame passed off as an original.
            (*ctx.as_mut_ptr()).err_recognition |= ff::ffi::AV_EF_CRCCHECK | ff::ffi::AV_EF_EXPLODE;
        }
        let codec_id = ctx.id();
        let decoder = ctx.decoder().video().map_err(|e| {
            if codec_id == codec::Id::None {
                return input_err(path, "the video stream's codec is unknown (a damaged header?)");
            }
            match e {
                ff::Error::DecoderNotFound => input_err(path, format!("no decoder for the video codec {codec_id:?}")),
                e => input_err(path, format!("cannot open the {codec_id:?} decoder: {}", describe_read(e))),
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            ictx,
            video,
            time_base,
            rate,
            decoder,
            grid: None,
            keep_other,
            queue: VecDeque::new(),
            eof_sent: false,
            done: false,
            last_pos: None,
            last_ts: None,
            frames: 0,
            dropped_same_slot: 0,
            corrupt_events: 0,
            corrupt_warnings: 0,
            pending_corrupt: None,
            read_error: None,
        })
    }

    /// Opens `path` (its video stream alone) to decode from the keyframe at
    /// or before position `pos` of `grid`, the grid a reader from the start
    /// sets. Falls back to the start when the input cannot seek there (no
    /// index, or the first frame after the seek lies past `pos`).
    pub fn open_at(path: &Path, grid: Grid, pos: i64) -> Result<Self, Error> {
        let mut r = Reader::open(path, false)?;
        if pos <= 0 {
            return Ok(r);
        }
        let ts = grid.ts_of(pos);
        let sought = unsafe {
            ff::ffi::av_seek_frame(r.ictx.as_mut_ptr(), r.video as i32, ts, ff::ffi::AVSEEK_FLAG_BACKWARD)
        } >= 0;
        if sought {
            r.decoder.flush();
            r.grid = Some(grid);
            // Frames of an open GOP before the keyframe cannot be decoded
            // after a seek: not worth a warning.
            match r.next(&Progress::quiet())? {
                Some(Event::Frame(d)) if d.pos <= pos => {
                    r.queue.push_front(Event::Frame(d));
                    return Ok(r);
                }
                _ => {}
            }
        }
        Reader::open(path, false)
    }

    /// The grid (known once the first frame is decoded).
    pub fn grid(&self) -> Option<Grid> {
        self.grid
    }

    /// The stream's frame count estimate (for progress), if known.
    pub fn estimated_frames(&self) -> Option<u64> {
        let s = self.ictx.stream(self.video)?;
        if s.frames() > 0 {
            return Some(s.frames() as u64);
        }
        let dur = if s.duration() > 0 {
            s.duration() as f64 * self.time_base.as_f64()
        } else if self.ictx.duration() > 0 {
            self.ictx.duration() as f64 / 1e6
        } else {
            return None;
        };
        Some((dur * self.rate.as_f64()).round() as u64)
    }

    /// Notes corrupt data; the warning is given once the next good frame
    /// shows where the loss is (decoding runs ahead of presentation).
    fn warn_corrupt(&mut self, _progress: &Progress, what: &str) {
        self.corrupt_events += 1;
        if self.pending_corrupt.is_none() {
            self.pending_corrupt = Some(what.to_string());
        }
    }

    fn flush_corrupt_warning(&mut self, progress: &Progress, next_pos: Option<i64>) {
        let Some(what) = self.pending_corrupt.take() else { return };
        self.corrupt_warnings += 1;
        if self.corrupt_warnings > 5 {
            if self.corrupt_warnings == 6 {
                progress.warn(&format!("{}: more corrupt data (further warnings suppressed)", self.path.display()));
            }
            return;
        }
        let from = self.last_pos.map(|p| p + 1).unwrap_or(0);
        let at = self.grid.map(|g| g.seconds(from)).unwrap_or(0.0);
        let lost = match next_pos {
            Some(n) if n > from => format!("{} frame(s) lost, treated as a gap", n - from),
            Some(_) => "no frame lost".to_string(),
            None => "the frames after it are lost".to_string(),
        };
        progress.warn(&format!(
            "{}: corrupt video data at {at:.2} s ({what}): {lost}",
            self.path.display()
        ));
    }

    /// The next frame or packet; `None` at the end of the input.
    pub fn next(&mut self, progress: &Progress) -> Result<Option<Event>, Error> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            // Frames the decoder has ready.
            let mut frame = Video::empty();
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    if let Some(d) = self.accept(frame, progress) {
                        return Ok(Some(Event::Frame(d)));
                    }
                    continue;
                }
                Err(ff::Error::Eof) => {
                    self.done = true;
                    continue;
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(e) => {
                    self.warn_corrupt(progress, &format!("undecodable: {}", describe(e)));
                    continue;
                }
            }
            if self.eof_sent {
                // Draining and the decoder asks for input: it is finished.
                self.done = true;
                continue;
            }
            let mut packet = ff::Packet::empty();
            match packet.read(&mut self.ictx) {
                Ok(()) => {}
                Err(ff::Error::Eof) => {
                    self.send_eof();
                    continue;
                }
                Err(e) => {
                    // A read error: what was read stays; the end-of-stream
                    // check decides whether the input was truncated.
                    self.read_error = Some(describe_read(e));
                    self.send_eof();
                    continue;
                }
            }
            if packet.stream() == self.video {
                if packet.is_corrupt() {
                    self.warn_corrupt(progress, "a corrupt video packet");
                }
                match self.decoder.send_packet(&packet) {
                    Ok(()) => {}
                    Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                        // Cannot happen with the receive-first loop; keep the packet's frames.
                        self.warn_corrupt(progress, "a video packet the decoder refused");
                    }
                    Err(e) => self.warn_corrupt(progress, &format!("undecodable: {}", describe(e))),
                }
            } else if self.keep_other {
                return Ok(Some(Event::Packet(packet)));
            }
        }
    }

    fn send_eof(&mut self) {
        self.eof_sent = true;
        if self.decoder.send_eof().is_err() {
            self.done = true;
        }
    }

    /// Places a decoded frame on the grid; `None` when it is dropped.
    fn accept(&mut self, frame: Video, progress: &Progress) -> Option<Decoded> {
        if frame.is_corrupt() || frame.has_decode_errors() {
            self.last_ts = frame.timestamp().or(self.last_ts);
            self.warn_corrupt(progress, "a damaged video frame");
            return None;
        }
        let ts = match (frame.timestamp(), self.last_ts, self.grid) {
            (Some(t), _, _) => t,
            (None, Some(l), Some(g)) => l + g.frame_duration(),
            (None, _, _) => 0,
        };
        let grid = *self.grid.get_or_insert(Grid { t0: ts, time_base: self.time_base, rate: self.rate });
        let pos = grid.pos_of(ts);
        self.last_ts = Some(ts);
        self.flush_corrupt_warning(progress, Some(pos));
        if self.last_pos.is_some_and(|l| pos <= l) {
            self.dropped_same_slot += 1;
            return None;
        }
        self.last_pos = Some(pos);
        self.frames += 1;
        Some(Decoded { pos, frame })
    }

    /// Checks the end of the input: at least one frame, and no sign of a
    /// truncated file. Call after `next` returned `None`.
    pub fn finish(&mut self, progress: &Progress) -> Result<(), Error> {
        self.flush_corrupt_warning(progress, None);
        if self.frames == 0 {
            let why = match &self.read_error {
                Some(e) => format!("no video frame could be decoded (read error: {e})"),
                None if self.corrupt_events > 0 => "no video frame could be decoded (corrupt data)".into(),
                None => "the video stream has no frames".into(),
            };
            return Err(input_err(&self.path, why));
        }
        let grid = self.grid.expect("a frame was decoded");
        let last = self.last_pos.unwrap_or(0);
        let stream = self.ictx.stream(self.video).expect("video stream");
        if stream.duration() > 0 {
            let start = if stream.start_time() != i64::MIN { stream.start_time() } else { grid.t0 };
            let end_pos = grid.pos_of(start + stream.duration());
            let missing = end_pos - (last + 1);
            // Allow a frame or two of container rounding and 2% slack.
            if missing > 2 && missing as f64 > 0.02 * end_pos as f64 {
                let because = match &self.read_error {
                    Some(e) => format!(" ({e})"),
                    None => String::new(),
                };
                return Err(input_err(
                    &self.path,
                    format!(
                        "truncated: the video ends at {:.2} s but the file says it lasts {:.2} s{because}",
                        grid.seconds(last + 1),
                        grid.seconds(end_pos)
                    ),
                ));
            }
        }
        if let Some(e) = &self.read_error {
            progress.warn(&format!("{}: read error near the end ({e}); kept what was read", self.path.display()));
        }
        if self.dropped_same_slot > 0 {
            progress.warn(&format!(
                "{}: dropped {} frame(s) that fell on the same frame slot at {} fps",
                self.path.display(),
                self.dropped_same_slot,
                self.rate
            ));
        }
        Ok(())
    }

    pub fn corrupt_events(&self) -> u64 {
        self.corrupt_events
    }
}
