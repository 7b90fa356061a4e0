//! Encoding and muxing: one encoded video stream plus every other input
//! stream copied as packets, written to a temporary file next to the output
//! and renamed over it only when everything succeeded.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::codec;
use ff::format::Pixel;
use ff::format::context::{Input as FormatInput, Output as FormatOutput};
use ff::media;
use ff::util::frame::Video;
use ff::{Dictionary, Rational};

use super::convert::{Colour, Converter, is_rgb, supported};
use super::input::describe;
use super::timeline::{Grid, Ratio};
use super::{Error, OutputOptions, Progress};
use crate::frame::Frame;

/// What the encoded video stream looks like.
pub(crate) struct VideoSpec {
    pub width: u32,
    pub height: u32,
    pub format: Pixel,
    pub colour: Colour,
    pub aspect: Rational,
    /// Output timestamps: position `p` is written at `grid.ts_of(p + shift)`.
    pub grid: Grid,
    pub shift: i64,
}

/// Removes the temporary file when dropped (after the muxer closed it).
use crate::interrupt::TempPath;

/// The container side of an output: the temporary file, the video stream
/// (added by the caller), every other stream copied from an input, and the
/// move into place. [`Writer`] puts an encoder in front of it; `join`
/// copies already encoded video packets into it.
pub(crate) struct Muxer {
    out: PathBuf,
    tmp: Option<TempPath>,
    overwrite: bool,
    octx: Option<FormatOutput>,
    fmt_name: String,
    ost_video: usize,
    ost_video_tb: Rational,
    /// Input stream index -> (output stream index, input tb, output tb, offset in input tb).
    map: Vec<Option<(usize, Rational, Rational, i64)>>,
    /// Last decoding timestamp written to each copied stream (by output index).
    copied_dts: Vec<Option<i64>>,
}

pub(crate) struct Writer {
    out: PathBuf,
    mux: Muxer,
    encoder: ff::encoder::Video,
    enc_tb: Rational,
    format: Pixel,
    width: u32,
    height: u32,
    colour: Colour,
    grid: Grid,
    shift: i64,
    rgb_conv: Converter,
    orig_conv: Converter,
    warned_resize: bool,
    last_pos: Option<i64>,
    pub frames: u64,
    pub codec_name: String,
}

fn out_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Output { path: path.to_path_buf(), reason: reason.into() }
}

/// Checks that `out` may be written (before any work is done).
pub(crate) fn check_output_path(out: &Path, overwrite: bool) -> Result<(), Error> {
    if out.as_os_str().is_empty() {
        return Err(Error::Args("the output path is empty".into()));
    }
    if out.is_dir() {
        return Err(out_err(out, "is a directory"));
    }
    if out.exists() && !overwrite {
        return Err(out_err(out, "already exists (use --overwrite to replace it)"));
    }
    let parent = parent_of(out);
    if !parent.is_dir() {
        return Err(out_err(out, format!("cannot write: the directory {} does not exist", parent.display())));
    }
    guess_format(out)?;
    Ok(())
}

fn parent_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The muxer FFmpeg picks for the output's file name.
fn guess_format(out: &Path) -> Result<String, Error> {
    let name = std::ffi::CString::new(out.to_string_lossy().as_bytes())
        .map_err(|_| Error::Args("the output path contains a NUL byte".into()))?;
    let fmt = unsafe { ff::ffi::av_guess_format(std::ptr::null(), name.as_ptr(), std::ptr::null()) };
    if fmt.is_null() {
        let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        return Err(out_err(
            out,
            if ext.is_empty() {
                "has no file extension to tell the container from (use e.g. .mp4 or .mkv)".into()
            } else {
                format!("unknown container extension .{ext} (use e.g. .mp4 or .mkv)")
            },
        ));
    }
    Ok(unsafe { std::ffi::CStr::from_ptr((*fmt).name) }.to_string_lossy().into_owned())
}

/// The video encoder for `--codec NAME` or, without it, for the container.
fn choose_encoder(out: &Path, octx: &FormatOutput, codec: Option<&str>) -> Result<ff::Codec, Error> {
    if let Some(name) = codec {
        let name = match name.to_ascii_lowercase().as_str() {
            "h264" | "x264" | "avc" => "libx264".to_string(),
            "h265" | "hevc" | "x265" => "libx265".to_string(),
            "vp9" => "libvpx-vp9".to_string(),
            "av1" => "libaom-av1".to_string(),
            other => other.to_string(),
        };
        let enc = ff::encoder::find_by_name(&name)
            .ok_or_else(|| Error::Args(format!("--codec {name}: no such video encoder in this FFmpeg")))?;
        if !enc.is_video() {
            return Err(Error::Args(format!("--codec {name}: not a video encoder")));
        }
        return Ok(enc);
    }
    let ext = out.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if matches!(ext.as_str(), "mp4" | "mkv" | "mov" | "m4v" | "ts" | "flv" | "3gp")
        && let Some(x264) = ff::encoder::find_by_name("libx264")
    {
        return Ok(x264);
    }
    let id = octx.format().codec(out, media::Type::Video);
    ff::encoder::find(id)
        .filter(|c| c.is_video())
        .ok_or_else(|| out_err(out, format!("no video encoder for the .{ext} container (pass --codec)")))
}

/// The encoder's pixel format: the source's when the encoder takes it.
fn choose_format(enc: &ff::Codec, src: Pixel, w: u32, h: u32) -> Pixel {
    let formats: Vec<Pixel> = enc
        .video()
        .ok()
        .and_then(|v| v.formats().map(|f| f.collect::<Vec<_>>()))
        .unwrap_or_default()
        .into_iter()
        .filter(|f| supported(*f).1)
        .collect();
    if formats.is_empty() || formats.contains(&src) {
        return src;
    }
    let h26x = matches!(enc.id(), codec::Id::H264 | codec::Id::HEVC);
    if h26x && w.is_multiple_of(2) && h.is_multiple_of(2) && formats.contains(&Pixel::YUV420P) {
        return Pixel::YUV420P;
    }
    let mut list: Vec<ff::ffi::AVPixelFormat> = formats.iter().map(|f| (*f).into()).collect();
    list.push(ff::ffi::AVPixelFormat::AV_PIX_FMT_NONE);
    let mut loss = 0;
    let best = unsafe { ff::ffi::avcodec_find_best_pix_fmt_of_list(list.as_ptr(), src.into(), 0, &mut loss) };
    Pixel::from(best)
}

/// Copies stream side data (rotation, HDR metadata, ...), except `skip`.
unsafe fn copy_side_data(from: *const ff::ffi::AVStream, to: *mut ff::ffi::AVStream, skip: &[ff::ffi::AVPacketSideDataType]) {
    unsafe {
        for i in 0..(*from).nb_side_data as usize {
            let sd = &*(*from).side_data.add(i);
            if skip.contains(&sd.type_) || sd.data.is_null() {
                continue;
            }
            let dst = ff::ffi::av_stream_new_side_data(to, sd.type_, sd.size as _);
            if !dst.is_null() {
                std::ptr::copy_nonoverlapping(sd.data, dst, sd.size);
            }
        }
    }
}

fn without_encoder_tag(d: ff::DictionaryRef<'_>) -> Dictionary<'static> {
    let mut out = Dictionary::new();
    for (k, v) in d.iter() {
        if !k.eq_ignore_ascii_case("encoder") {
            out.set(k, v);
        }
    }
    out
}

impl Muxer {
    /// Opens a temporary file next to `out` for its container (the file is
    /// removed on error, drop or interruption until [`Muxer::finish`]).
    pub fn create(out: &Path, overwrite: bool) -> Result<Self, Error> {
        super::init();
        check_output_path(out, overwrite)?;
        let fmt_name = guess_format(out)?;
        let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let tmp = parent_of(out).join(format!(".{file_name}.weft-{}.part", std::process::id()));
        // Registered before the file exists, so that a signal at any point
        // removes it; dropped after `octx` (see `Drop`): an error from here
        // on removes the temporary file.
        let tmp = TempPath::new(tmp);
        let octx = ff::format::output_as(tmp.path(), &fmt_name)
            .map_err(|e| out_err(out, format!("cannot write: {}", describe(e))))?;
        Ok(Muxer {
            out: out.to_path_buf(),
            tmp: Some(tmp),
            overwrite,
            octx: Some(octx),
            fmt_name,
            ost_video: 0,
            ost_video_tb: Rational::new(1, 1),
            map: Vec::new(),
            copied_dts: Vec::new(),
        })
    }

    pub fn octx(&self) -> &FormatOutput {
        self.octx.as_ref().expect("open")
    }

    /// Whether the container can hold `id` streams.
    pub fn holds(&self, id: codec::Id) -> bool {
        unsafe { ff::ffi::avformat_query_codec(self.octx().format().as_ptr(), id.into(), ff::ffi::FF_COMPLIANCE_NORMAL) != 0 }
    }

    /// Adds the streams in the input's order (the video one made by
    /// `add_video`, the others copied from `input`, delayed by `shift_secs`),
    /// keeps the input's metadata, and writes the header. Without an input,
    /// the video stream alone.
    pub fn add_streams(
        &mut self,
        input: Option<(&FormatInput, usize)>,
        shift_secs: f64,
        progress: &Progress,
        add_video: impl FnOnce(&mut FormatOutput) -> Result<usize, Error>,
    ) -> Result<(), Error> {
        let out = self.out.clone();
        let fmt_name = self.fmt_name.clone();
        let octx = self.octx.as_mut().expect("open");
        match input {
            None => self.ost_video = add_video(octx)?,
            Some((ictx, video)) => {
                octx.set_metadata(without_encoder_tag(ictx.metadata()));
                let mut add_video = Some(add_video);
                for ist in ictx.streams() {
                    let i = ist.index();
                    self.map.push(None);
                    if i == video {
                        let o = (add_video.take().expect("one video stream"))(octx)?;
                        let mut ost = octx.stream_mut(o).expect("added");
                        ost.set_metadata(without_encoder_tag(ist.metadata()));
                        unsafe {
                            copy_side_data(ist.as_ptr(), ost.as_mut_ptr(), &[ff::ffi::AVPacketSideDataType::AV_PKT_DATA_CPB_PROPERTIES]);
                            (*ost.as_mut_ptr()).disposition = (*ist.as_ptr()).disposition;
                        }
                        self.ost_video = o;
                        continue;
                    }
                    let params = ist.parameters();
                    let kind = params.medium();
                    let label = format!("stream #{i} ({kind:?} {:?})", params.id());
                    if !matches!(kind, media::Type::Audio | media::Type::Subtitle | media::Type::Video) {
                        progress.warn(&format!("{}: not copied: {label} cannot be copied as packets", out.display()));
                        continue;
                    }
                    let ok = unsafe {
                        ff::ffi::avformat_query_codec(octx.format().as_ptr(), params.id().into(), ff::ffi::FF_COMPLIANCE_NORMAL)
                    };
                    if ok == 0 {
                        progress.warn(&format!("{}: not copied: the {fmt_name} container cannot hold {label}", out.display()));
                        continue;
                    }
                    let mut ost = octx.add_stream(ff::encoder::find(codec::Id::None)).map_err(|e| out_err(&out, describe(e)))?;
                    ost.set_parameters(params);
                    ost.set_time_base(ist.time_base());
                    ost.set_metadata(without_encoder_tag(ist.metadata()));
                    unsafe {
                        (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0;
                        (*ost.as_mut_ptr()).disposition = (*ist.as_ptr()).disposition;
                        copy_side_data(ist.as_ptr(), ost.as_mut_ptr(), &[]);
                    }
                    let itb = ist.time_base();
                    let offset = (shift_secs * itb.denominator() as f64 / itb.numerator() as f64).round() as i64;
                    let o = ost.index();
                    self.map[i] = Some((o, itb, itb, offset));
                }
            }
        }
        octx.write_header().map_err(|e| mux_err(&out, &self.map, "cannot write the header", e))?;
        self.ost_video_tb = octx.stream(self.ost_video).expect("video").time_base();
        for m in self.map.iter_mut().flatten() {
            m.2 = octx.stream(m.0).expect("mapped").time_base();
        }
        Ok(())
    }

    /// Writes an encoded video packet whose timestamps are in `tb`.
    pub fn write_video(&mut self, mut pkt: ff::Packet, tb: Rational) -> Result<(), Error> {
        pkt.set_stream(self.ost_video);
        pkt.set_position(-1);
        pkt.rescale_ts(tb, self.ost_video_tb);
        let octx = self.octx.as_mut().expect("open");
        pkt.write_interleaved(octx).map_err(|e| mux_err(&self.out, &self.map, "cannot write", e))
    }

    /// Copies a packet of another input stream (dropped when not mapped).
    pub fn write_packet(&mut self, mut pkt: ff::Packet) -> Result<(), Error> {
        let Some(Some((o, itb, otb, offset))) = self.map.get(pkt.stream()).copied() else { return Ok(()) };
        if offset != 0 {
            pkt.set_pts(pkt.pts().map(|t| t + offset));
            pkt.set_dts(pkt.dts().map(|t| t + offset));
        }
        pkt.rescale_ts(itb, otb);
        pkt.set_position(-1);
        pkt.set_stream(o);
        let dts = pkt.dts();
        if self.copied_dts.len() <= o {
            self.copied_dts.resize(o + 1, None);
        }
        let last = self.copied_dts[o];
        let octx = self.octx.as_mut().expect("open");
        pkt.write_interleaved(octx).map_err(|e| {
            // The muxer refuses timestamps that go back: a damaged input, not a bad output path.
            if let (Some(d), Some(l)) = (dts, last)
                && d <= l
            {
                let secs = |t: i64| t as f64 * otb.numerator() as f64 / otb.denominator().max(1) as f64;
                return out_err(
                    &self.out,
                    format!(
                        "cannot copy input stream #{}: its timestamps go backwards ({:.2} s, then {:.2} s): the input is \
                         damaged (remux it, e.g. `ffmpeg -i IN -c copy FIXED.mkv`, or drop that stream)",
                        pkt_stream_in(&self.map, o),
                        secs(l),
                        secs(d)
                    ),
                );
            }
            mux_err(&self.out, &self.map, &format!("cannot copy input stream #{}", pkt_stream_in(&self.map, o)), e)
        })?;
        if dts.is_some() {
            self.copied_dts[o] = dts;
        }
        Ok(())
    }

    /// Finishes the file and moves it to its name.
    pub fn finish(mut self) -> Result<(), Error> {
        let mut octx = self.octx.take().expect("open");
        octx.write_trailer().map_err(|e| mux_err(&self.out, &self.map, "cannot finish the file", e))?;
        drop(octx); // closes the file
        let tmp = self.tmp.take().expect("open");
        let (out, overwrite) = (self.out.clone(), self.overwrite);
        tmp.commit(|tmp| {
            if overwrite {
                return std::fs::rename(tmp, &out).map_err(|e| out_err(&out, format!("cannot move the finished file into place: {e}")));
            }
            // A hard link fails if OUT appeared meanwhile: never clobber it.
            match std::fs::hard_link(tmp, &out) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(out_err(&out, "already exists (use --overwrite to replace it)"))
                }
                Err(_) => std::fs::rename(tmp, &out)
                    .map_err(|e| out_err(&out, format!("cannot move the finished file into place: {e}"))),
            }
        })?;
        Ok(())
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        // Close the muxer's file before `tmp` (a field, dropped after this) removes it.
        drop(self.octx.take());
    }
}

impl Writer {
    /// Creates the temporary output, the encoder and the copied streams, and
    /// writes the header. `input`: the input and its video stream index, whose
    /// other streams are copied and whose metadata is kept.
    pub fn create(
        out: &Path,
        opts: &OutputOptions,
        spec: &VideoSpec,
        input: Option<(&FormatInput, usize)>,
        progress: &Progress,
    ) -> Result<Self, Error> {
        let mut mux = Muxer::create(out, opts.overwrite)?;
        let fmt_name = mux.fmt_name.clone();
        let enc_codec = choose_encoder(out, mux.octx(), opts.codec.as_deref())?;
        if !mux.holds(enc_codec.id()) {
            return Err(Error::Args(format!(
                "the {fmt_name} container of {} cannot hold {} video (pick another --codec or extension, e.g. .mkv)",
                out.display(),
                enc_codec.name()
            )));
        }
        let format = choose_format(&enc_codec, spec.format, spec.width, spec.height);
        if !supported(format).1 {
            return Err(Error::Input {
                path: PathBuf::from(out),
                reason: format!("unsupported pixel format {format:?}"),
            });
        }
        if format != spec.format {
            progress.note(&format!(
                "{} cannot encode {:?}: encoding {:?} instead",
                enc_codec.name(),
                spec.format,
                format
            ));
        }
        let colour = if is_rgb(spec.format) && !is_rgb(format) { Colour::for_rgb_source(spec.height) } else { spec.colour };
        let enc_tb = Rational::new(spec.grid.time_base.num as i32, spec.grid.time_base.den as i32);
        let global_header = mux.octx().format().flags().contains(ff::format::Flags::GLOBAL_HEADER);

        // The encoder.
        let mut ctx = codec::context::Context::new_with_codec(enc_codec);
        ctx.set_threading(codec::threading::Config { kind: codec::threading::Type::Frame, count: 0, ..Default::default() });
        let mut enc = ctx.encoder().video().map_err(|e| out_err(out, format!("encoder: {}", describe(e))))?;
        enc.set_width(spec.width);
        enc.set_height(spec.height);
        enc.set_format(format);
        enc.set_time_base(enc_tb);
        enc.set_frame_rate(Some(Rational::new(spec.grid.rate.num as i32, spec.grid.rate.den as i32)));
        if spec.aspect.numerator() > 0 {
            enc.set_aspect_ratio(spec.aspect);
        }
        enc.set_colorspace(colour.space);
        enc.set_color_range(colour.range);
        enc.set_color_primaries(colour.primaries);
        enc.set_color_transfer_characteristic(colour.transfer);
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut dict = Dictionary::new();
        let name = enc_codec.name().to_string();
        match name.as_str() {
            "libx264" | "libx265" => {
                dict.set("crf", &opts.crf.unwrap_or(18).to_string());
                dict.set("preset", opts.preset.as_deref().unwrap_or("medium"));
            }
            "libvpx-vp9" | "libvpx" | "libaom-av1" => {
                dict.set("crf", &opts.crf.unwrap_or(30).to_string());
                dict.set("b", "0");
            }
            "ffv1" => {
                if opts.crf.is_some() {
                    progress.note("--crf is ignored for ffv1 (lossless)");
                }
                dict.set("level", "3");
                dict.set("slicecrc", "1");
            }
            _ => {
                if let Some(crf) = opts.crf {
                    dict.set("crf", &crf.to_string());
                }
            }
        }
        let encoder = enc.open_with(dict).map_err(|e| out_err(out, format!("cannot open the {name} encoder: {}", describe(e))))?;

        let rate = Rational::new(spec.grid.rate.num as i32, spec.grid.rate.den as i32);
        let frame_dur_secs = spec.grid.frame_duration() as f64 * spec.grid.time_base.as_f64();
        mux.add_streams(input, spec.shift as f64 * frame_dur_secs, progress, |octx| {
            add_video_stream(octx, out, enc_codec, &encoder, enc_tb, rate)
        })?;
        Ok(Writer {
            out: out.to_path_buf(),
            mux,
            encoder,
            enc_tb,
            format,
            width: spec.width,
            height: spec.height,
            colour,
            grid: spec.grid,
            shift: spec.shift,
            rgb_conv: Converter::new(),
            orig_conv: Converter::new(),
            warned_resize: false,
            last_pos: None,
            frames: 0,
            codec_name: name,
        })
    }

    /// Output timestamp of a grid position.
    fn pts_of(&self, pos: i64) -> i64 {
        self.grid.ts_of(pos + self.shift)
    }

    fn check_order(&mut self, pos: i64) -> Result<(), Error> {
        if self.last_pos.is_some_and(|l| pos <= l) {
            return Err(out_err(&self.out, format!("internal error: frame position {pos} written out of order")));
        }
        self.last_pos = Some(pos);
        Ok(())
    }

    /// Encodes a decoded original frame unchanged at grid position `pos`
    /// (converted only when the encoder cannot take its format or size).
    pub fn write_original(&mut self, pos: i64, frame: &Video, progress: &Progress) -> Result<(), Error> {
        self.check_order(pos)?;
        let mut f = if frame.format() == self.format && frame.width() == self.width && frame.height() == self.height {
            // A new reference to the same buffers: the pixels are not touched.
            unsafe { Video::wrap(ff::ffi::av_frame_clone(frame.as_ptr())) }
        } else {
            if (frame.width(), frame.height()) != (self.width, self.height) && !self.warned_resize {
                self.warned_resize = true;
                progress.warn(&format!(
                    "the video changes size mid-stream ({}x{} -> {}x{}): scaling to {}x{}",
                    self.width, self.height, frame.width(), frame.height(), self.width, self.height
                ));
            }
            self.orig_conv
                .convert(frame, self.format, self.width, self.height, &self.colour)
                .map_err(|e| out_err(&self.out, e))?
        };
        self.encode(pos, &mut f)
    }

    /// Encodes a generated RGB frame at grid position `pos`.
    pub fn write_rgb(&mut self, pos: i64, frame: &Frame) -> Result<(), Error> {
        self.check_order(pos)?;
        let mut f = self.rgb_conv.from_rgb_frame(frame, self.format, &self.colour).map_err(|e| out_err(&self.out, e))?;
        if (f.width(), f.height()) != (self.width, self.height) {
            f = self.orig_conv.convert(&f, self.format, self.width, self.height, &self.colour).map_err(|e| out_err(&self.out, e))?;
        }
        self.encode(pos, &mut f)
    }

    fn encode(&mut self, pos: i64, f: &mut Video) -> Result<(), Error> {
        f.set_pts(Some(self.pts_of(pos)));
        f.set_kind(ff::picture::Type::None);
        self.encoder.send_frame(f).map_err(|e| out_err(&self.out, format!("encoding failed: {}", describe(e))))?;
        self.frames += 1;
        self.drain()
    }

    fn drain(&mut self) -> Result<(), Error> {
        let dur = self.grid.frame_duration();
        loop {
            let mut pkt = ff::Packet::empty();
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => {
                    if pkt.duration() == 0 {
                        pkt.set_duration(dur);
                    }
                    self.mux.write_video(pkt, self.enc_tb)?;
                }
                Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => return Ok(()),
                Err(e) => return Err(out_err(&self.out, format!("encoding failed: {}", describe(e)))),
            }
        }
    }

    /// Copies a packet of another input stream (dropped when not mapped).
    pub fn write_packet(&mut self, pkt: ff::Packet) -> Result<(), Error> {
        self.mux.write_packet(pkt)
    }

    /// Flushes the encoder, finishes the file and moves it to its name.
    pub fn finish(mut self) -> Result<(), Error> {
        self.encoder.send_eof().map_err(|e| out_err(&self.out, format!("encoding failed: {}", describe(e))))?;
        self.drain()?;
        self.mux.finish()
    }
}


/// A muxer error in words. The muxer interleaves: a write fails on whatever
/// packet it was given, but with streams copied from the input, a damaged
/// one of those (unreadable parameters, broken timestamps) is the usual
/// cause of an invalid-argument error, so the message says so.
fn mux_err(out: &Path, map: &[Option<(usize, Rational, Rational, i64)>], what: &str, e: ff::Error) -> Error {
    let copied: Vec<String> = map.iter().enumerate().filter(|(_, m)| m.is_some()).map(|(i, _)| format!("#{i}")).collect();
    let hint = match e {
        ff::Error::Other { errno: libc::EINVAL } if !copied.is_empty() => format!(
            " (the input stream{} copied, {}, may be damaged: remux the input, or drop the stream)",
            if copied.len() == 1 { "" } else { "s" },
            copied.join(", ")
        ),
        _ => String::new(),
    };
    out_err(out, format!("{what}: {}{hint}", describe(e)))
}

/// The input stream index copied to output stream `o`.
fn pkt_stream_in(map: &[Option<(usize, Rational, Rational, i64)>], o: usize) -> usize {
    map.iter().position(|m| m.is_some_and(|m| m.0 == o)).unwrap_or(o)
}

/// Adds the video stream to `octx`: `codec` and `params` (an encoder's, or
/// those of a stream copied as packets), in time base `tb` at `rate`.
pub(crate) fn add_video_stream(
    octx: &mut FormatOutput,
    out: &Path,
    codec: impl ff::codec::traits::Encoder,
    params: impl Into<codec::Parameters>,
    tb: Rational,
    rate: Rational,
) -> Result<usize, Error> {
    let mut ost = octx.add_stream(codec).map_err(|e| out_err(out, format!("video stream: {}", describe(e))))?;
    ost.set_parameters(params);
    ost.set_time_base(tb);
    ost.set_avg_frame_rate(rate);
    unsafe {
        (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0;
    }
    Ok(ost.index())
}

/// Output grid for a clip made from scratch at `rate`: time base 1/rate.
pub(crate) fn fresh_grid(rate: Ratio) -> Grid {
    Grid { t0: 0, time_base: Ratio::new(rate.den, rate.num).expect("rate > 0"), rate }
}
