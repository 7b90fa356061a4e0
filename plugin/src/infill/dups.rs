//! `replace-duplicates`: weftinfill's twin of `weft infill --dups`. A frame
//! that repeats the one before it (`weft::analysis::is_duplicate` on packed
//! RGB, within `duplicate-tolerance`, the CLI's `--dup-tolerance`) is
//! dropped on the sink side, so the run of repeats becomes a hole in the
//! timestamps that the element's gap fill regenerates, frame by frame at
//! its own time, from the real frames around it (a scene cut holds, as for
//! any hole). This is what `videorate` papers over when it normalises a
//! clip to a track's frame rate, as GStreamer Editing Services do before a
//! clip's effects. Repeats at the end of the stream are covered like a GAP
//! event, so they are generated at EOS from the frames before them. A run
//! is cut at `max-gap` repeats: the next repeat passes as it is, so nothing
//! is ever lost to a skipped hole. Frames that are not repeats are never
//! touched (the same buffers go on).

use gst::glib;
use gst::prelude::*;

use crate::common::Converter;

/// `duplicate-tolerance` default: the command line's `--dup-tolerance`
/// default (mean absolute difference in 8-bit levels; catches re-encoded
/// repeats, never a frame with visible motion).
pub(super) const DEFAULT_TOLERANCE: f64 = 0.5;

/// The two properties.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct DupSettings {
    pub enabled: bool,
    pub tolerance: f64,
}

impl Default for DupSettings {
    fn default() -> Self {
        Self { enabled: false, tolerance: DEFAULT_TOLERANCE }
    }
}

pub(super) fn properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecBoolean::builder("replace-duplicates")
            .nick("Replace duplicates")
            .blurb(
                "Regenerate frames that repeat the one before (frozen, or duplicated by videorate as GES \
                 does to fit a clip to its track) from the real frames around the run of repeats, each at \
                 its own time (weft-fill reason duplicate); scene cuts hold. Off: a static shot is not \
                 touched. As weft infill --dups",
            )
            .default_value(false)
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("duplicate-tolerance")
            .nick("Duplicate tolerance")
            .blurb(
                "With replace-duplicates: largest mean absolute difference (8-bit RGB levels) of a frame \
                 from the one before that still makes it a repeat (0 = exact copies only). As weft infill \
                 --dup-tolerance",
            )
            .minimum(0.0)
            .maximum(255.0)
            .default_value(DEFAULT_TOLERANCE)
            .mutable_playing()
            .build(),
    ]
}

/// Sets one of [`properties`]; false when `name` is not one.
pub(super) fn set_property(s: &mut DupSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "replace-duplicates" => s.enabled = value.get().expect("type checked"),
        "duplicate-tolerance" => s.tolerance = value.get().expect("type checked"),
        _ => return false,
    }
    true
}

pub(super) fn property(s: &DupSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "replace-duplicates" => s.enabled.to_value(),
        "duplicate-tolerance" => s.tolerance.to_value(),
        _ => return None,
    })
}

/// What to do with a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not a repeat: goes on. `after` repeats were dropped just before it
    /// (the hole it closes is theirs).
    Pass { after: u32 },
    /// A repeat: dropped, to be regenerated.
    Drop,
}

/// Per-stream detection state: the previous frame in RGB and the run of
/// repeats dropped since the last frame that went on.
#[derive(Default)]
pub(super) struct Detector {
    conv: Option<(gst_video::VideoInfo, Converter)>,
    prev: Option<weft::Frame>,
    run: u32,
}

impl Detector {
    /// A new segment, a flush or new caps: frames before it are no reference.
    pub fn reset(&mut self) {
        self.prev = None;
        self.run = 0;
    }

    /// Repeats dropped since the last frame that went on.
    pub fn pending(&self) -> u32 {
        self.run
    }

    /// Whether `buffer` (in `info`'s format) repeats the frame before it.
    /// At most `max_run` repeats in a row are dropped.
    pub fn check(
        &mut self,
        s: &DupSettings,
        info: &gst_video::VideoInfo,
        buffer: &gst::BufferRef,
        max_run: u32,
    ) -> Result<Verdict, String> {
        if !s.enabled {
            self.reset();
            return Ok(Verdict::Pass { after: 0 });
        }
        if self.conv.as_ref().is_none_or(|(i, _)| i != info) {
            self.conv = Some((info.clone(), Converter::new(info)?));
            self.reset();
        }
        let (_, conv) = self.conv.as_ref().expect("set above");
        let frame = conv.to_frame(buffer)?;
        let repeat = !buffer.flags().contains(gst::BufferFlags::DISCONT)
            && self.run < max_run
            && self.prev.as_ref().is_some_and(|p| weft::analysis::is_duplicate(p, &frame, s.tolerance));
        self.prev = Some(frame);
        if repeat {
            self.run += 1;
            Ok(Verdict::Drop)
        } else {
            let after = std::mem::take(&mut self.run);
            Ok(Verdict::Pass { after })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> gst_video::VideoInfo {
        gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 8, 4).fps(gst::Fraction::new(25, 1)).build().unwrap()
    }

    fn buffer(info: &gst_video::VideoInfo, level: u8) -> gst::Buffer {
        let mut b = gst::Buffer::with_size(info.size()).unwrap();
        b.get_mut().unwrap().map_writable().unwrap().iter_mut().for_each(|p| *p = level);
        b
    }

    #[test]
    fn repeats_within_tolerance_are_dropped_and_runs_are_cut_at_max_run() {
        gst::init().unwrap();
        let info = info();
        let on = DupSettings { enabled: true, ..Default::default() };
        let mut d = Detector::default();
        let mut verdicts = Vec::new();
        // 10, 10 (repeat), 10 (repeat), 10 (cut at 2: passes), 60, 60 (repeat), 61 (above 0.5 levels).
        for level in [10u8, 10, 10, 10, 60, 60, 61] {
            verdicts.push(d.check(&on, &info, &buffer(&info, level), 2).unwrap());
        }
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Pass { after: 0 }, Drop, Drop, Pass { after: 2 }, Pass { after: 0 }, Drop, Pass { after: 1 }]
        );
        // Off: nothing is a repeat.
        let off = DupSettings::default();
        assert_eq!(d.check(&off, &info, &buffer(&info, 61), 2).unwrap(), Pass { after: 0 });
        assert_eq!(d.check(&off, &info, &buffer(&info, 61), 2).unwrap(), Pass { after: 0 });
        // A wider tolerance takes the one-level step as a repeat.
        let wide = DupSettings { enabled: true, tolerance: 1.0 };
        let mut d = Detector::default();
        assert_eq!(d.check(&wide, &info, &buffer(&info, 60), 30).unwrap(), Pass { after: 0 });
        assert_eq!(d.check(&wide, &info, &buffer(&info, 61), 30).unwrap(), Drop);
        assert_eq!(d.pending(), 1);
        d.reset();
        assert_eq!(d.check(&wide, &info, &buffer(&info, 61), 30).unwrap(), Pass { after: 0 });
    }
}
