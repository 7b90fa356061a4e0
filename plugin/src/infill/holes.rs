//! Hole bookkeeping at the input's frame rate: each buffer's PTS against
//! where the next frame should start; a hole of up to `max-gap` frames (or a
//! run of dropped repeats, `dups.rs`) becomes a fill job queued in front of
//! the buffer after it, and at EOS a fill up to the end of the last GAP event.

use std::collections::VecDeque;

use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::common::{self, CAT, FillJob, Item};

use super::dups;
use super::imp::WeftInfill;
use super::settings::Settings;

impl WeftInfill {
    /// A fill for `n` frames from `start`, or a report when it is too long.
    #[allow(clippy::too_many_arguments)]
    fn gap_job(
        &self,
        settings: &Settings,
        info: &gst_video::VideoInfo,
        history: &VecDeque<gst::Buffer>,
        start: gst::ClockTime,
        dur: gst::ClockTime,
        n: u64,
        at_end: bool,
    ) -> Option<Item> {
        let reason = if at_end { "end-gap" } else { "gap" };
        if n > settings.max_gap as u64 {
            gst::warning!(
                CAT,
                imp = self,
                "{} of {} frame(s) at {} is longer than max-gap {}: passing it through",
                reason,
                n,
                start,
                settings.max_gap
            );
            common::post_fill_message(self.obj().upcast_ref(), start, n as usize, "skip", reason, dur, None);
            return None;
        }
        let Some(model) = self.core.model() else {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("no model loaded"));
            return None;
        };
        gst::info!(CAT, imp = self, "{}: {} frame(s) missing at {}", reason, n, start);
        Some(Item::Fill(Box::new(FillJob {
            model,
            opts: common::generate_options(&settings.model),
            info: info.clone(),
            before: history.iter().cloned().collect(),
            after: Vec::new(),
            want_after: if at_end { 0 } else { self.core.context().after },
            start,
            dur,
            n: n as usize,
            scene_threshold: Some(settings.scene_threshold),
            reason,
        })))
    }

    /// At EOS: fill up to the end of the last GAP event.
    pub(super) fn end_fill(&self) -> Option<Item> {
        let settings = self.settings();
        let st = self.lock_state();
        let (Some(gap_end), Some(info)) = (st.gap_end, st.info.as_ref()) else { return None };
        let dur = common::frame_duration(info, None).or(st.dur)?;
        let Some(next) = st.next_pts else {
            gst::warning!(CAT, imp = self, "GAP events but no frame to generate from: nothing filled");
            return None;
        };
        if gap_end <= next {
            return None;
        }
        let n = common::frames_in(gap_end - next, dur);
        if n == 0 {
            return None;
        }
        self.gap_job(&settings, info, &st.history, next, dur, n, true)
    }

    /// Chain function at the input's frame rate: a hole between the frame
    /// expected next and `buffer` becomes a fill queued in front of it
    /// (`after_dups`: repeats of the frame before dropped just before it).
    pub(super) fn hole_chain(&self, buffer: gst::Buffer, after_dups: u32) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let mut fill = None;
        {
            let mut st = self.lock_state();
            let Some(info) = st.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a buffer before caps"));
                return Err(gst::FlowError::NotNegotiated);
            };
            // Without a nominal frame rate (0/1), the shortest buffer
            // duration seen so far: a buffer before a hole may span it.
            let dur = common::frame_duration(&info, None)
                .or_else(|| buffer.duration().filter(|d| !d.is_zero()).map(|d| st.dur.map_or(d, |s| s.min(d))));
            match (buffer.pts(), dur) {
                (Some(pts), Some(dur)) if st.segment.rate() > 0.0 => {
                    // The first buffer of a segment should sit at its start.
                    let expected = st.next_pts.or(st.segment.start());
                    if let Some(exp) = expected.filter(|e| pts > *e) {
                        let n = common::frames_in(pts - exp, dur);
                        if n > 0 {
                            gst::debug!(
                                CAT,
                                imp = self,
                                "buffer at {} expected at {}: {} frame(s) missing",
                                pts,
                                exp,
                                n
                            );
                            fill = self.gap_job(&settings, &info, &st.history, exp, dur, n, false);
                        }
                    }
                    st.next_pts = Some(st.next_pts.map_or(pts + dur, |n| n.max(pts + dur)));
                    st.dur = Some(dur);
                    st.history.push_back(buffer.clone());
                    while st.history.len() > self.core.context().before {
                        st.history.pop_front();
                    }
                }
                _ => {
                    gst::log!(CAT, imp = self, "buffer without PTS or frame duration: passed through");
                }
            }
        }
        if let Some(Item::Fill(job)) = fill.as_mut().filter(|_| after_dups > 0) {
            job.reason = "duplicate";
        }
        if let Some(fill) = fill {
            self.core.worker.enqueue(fill)?;
        }
        self.core.worker.enqueue(Item::Buffer(buffer))
    }

    /// `replace-duplicates` (`dups.rs`): `None` when `buffer` repeats the
    /// frame before it and is dropped (its time covered as by a GAP event,
    /// so a run at the end is generated at EOS), else the number of repeats
    /// dropped just before it.
    pub(super) fn check_duplicate(&self, buffer: &gst::Buffer) -> Result<Option<u32>, gst::FlowError> {
        let settings = self.settings();
        let mut st = self.lock_state();
        let Some(info) = st.info.clone() else { return Ok(Some(0)) };
        match st.dups.check(&settings.dups, &info, buffer, settings.max_gap) {
            Ok(dups::Verdict::Pass { after }) => Ok(Some(after)),
            Ok(dups::Verdict::Drop) => {
                let dur = buffer.duration().or_else(|| common::frame_duration(&info, None));
                if let (Some(pts), Some(dur)) = (buffer.pts(), dur) {
                    st.gap_end = Some(st.gap_end.map_or(pts + dur, |e| e.max(pts + dur)));
                }
                gst::log!(CAT, imp = self, "buffer at {:?} repeats the one before: regenerated", buffer.pts());
                Ok(None)
            }
            Err(e) => {
                drop(st);
                gst::element_imp_error!(self, gst::StreamError::Format, ("replace-duplicates: {}", e));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Repeats dropped at the end of a segment are generated before it ends.
    pub(super) fn flush_duplicates(&self) -> bool {
        if self.lock_state().dups.pending() == 0 {
            return true;
        }
        self.end_fill().is_none_or(|fill| self.core.worker.enqueue(fill).is_ok())
    }
}
