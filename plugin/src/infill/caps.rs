//! Caps: the src caps are the sink caps when downstream takes them, else
//! the same at downstream's frame rate (converted, `retime.rs`); CAPS queries
//! offer the peer's caps at the same rates first, then at any.

use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::common::{CAT, Item};

use super::imp::WeftInfill;
use super::retime::{Retime, reduced};

/// `caps` with any frame rate.
fn any_rate(caps: &gst::Caps) -> gst::Caps {
    let mut c = caps.clone();
    for s in c.make_mut().iter_mut() {
        s.set("framerate", gst::FractionRange::new(gst::Fraction::new(0, 1), gst::Fraction::new(i32::MAX, 1)));
    }
    c
}

impl WeftInfill {
    /// The src caps for sink caps `caps`: the same when downstream takes
    /// them, else downstream's frame rate nearest the input's.
    fn output_caps(&self, caps: &gst::Caps) -> Option<gst::Caps> {
        let srcpad = &self.core.srcpad;
        if srcpad.peer_query_accept_caps(caps) {
            return Some(caps.clone());
        }
        let fps = caps.structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok())?;
        let wide = any_rate(caps);
        let peer = srcpad.peer_query_caps(Some(&wide));
        let mut out = wide.intersect_with_mode(&peer, gst::CapsIntersectMode::First);
        if out.is_empty() {
            return None;
        }
        out.truncate();
        if let Some(s) = out.make_mut().structure_mut(0) {
            s.fixate_field_nearest_fraction("framerate", fps);
        }
        out.fixate();
        Some(out)
    }

    /// Sets the sink caps `caps` (`info`) and picks the src caps: a
    /// conversion under the old ones ends first. `None` (an error posted)
    /// when downstream takes none.
    pub(super) fn negotiate(&self, caps: &gst::Caps, info: gst_video::VideoInfo) -> Option<gst::Caps> {
        // A conversion under the old caps ends here.
        if !self.retime_flush_pending(true) {
            return None;
        }
        let Some(out) = self.output_caps(caps) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("downstream accepts no video like {} at any frame rate", caps)
            );
            return None;
        };
        let out_fps = match gst_video::VideoInfo::from_caps(&out) {
            Ok(i) => i.fps(),
            Err(e) => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("unsupported caps {}: {}", out, e));
                return None;
            }
        };
        let retime = match (reduced(info.fps()), reduced(out_fps)) {
            (Some(a), Some(b)) if a != b => match Retime::new(a, b) {
                Some(rt) => Some(rt),
                None => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("no common frame grid for {} and {} fps (pick a simpler rate)", info.fps(), out_fps)
                    );
                    return None;
                }
            },
            _ => None,
        };
        if let Some(rt) = &retime {
            gst::info!(
                CAT,
                imp = self,
                "converting {} to {} fps ({} and {} ticks a frame)",
                info.fps(),
                out_fps,
                rt.in_step,
                rt.out_step
            );
        }
        let mut st = self.lock_state();
        // Frames of the old caps cannot condition frames of the new ones.
        st.history.clear();
        st.dur = None;
        st.info = Some(info);
        st.retime = retime;
        st.out_caps = Some(out.clone());
        Some(out)
    }

    /// Downstream asked to renegotiate: picks the src caps again for the
    /// current sink caps and, when they change, queues them (after what the
    /// old ones still owe).
    pub(super) fn renegotiate(&self) -> Result<(), gst::FlowError> {
        let (caps, old) = {
            let st = self.lock_state();
            (self.core.sinkpad.current_caps(), st.out_caps.clone())
        };
        let (Some(caps), Some(old)) = (caps, old) else { return Ok(()) };
        let Some(out) = self.output_caps(&caps) else {
            self.core.srcpad.mark_reconfigure();
            return Err(gst::FlowError::NotNegotiated);
        };
        if out == old {
            return Ok(());
        }
        gst::debug!(CAT, imp = self, "downstream renegotiated: {} -> {}", old, out);
        let info = gst_video::VideoInfo::from_caps(&caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        let out = self.negotiate(&caps, info).ok_or(gst::FlowError::NotNegotiated)?;
        self.core.worker.enqueue(Item::Event(gst::event::Caps::new(&out)))?;
        Ok(())
    }

    /// CAPS query on `pad`: the caps the peer of `other` (the other pad)
    /// takes, at the same frame rates first (passthrough), then at any.
    pub(super) fn query_caps(&self, pad: &gst::Pad, other: &gst::Pad, filter: Option<&gst::Caps>) -> gst::Caps {
        let templ = pad.pad_template_caps();
        let peer = other.peer_query_caps(filter.map(any_rate).as_ref());
        let mut caps = if peer.is_any() {
            templ
        } else {
            let mut same = peer.intersect_with_mode(&templ, gst::CapsIntersectMode::First);
            same.merge(any_rate(&peer).intersect_with_mode(&templ, gst::CapsIntersectMode::First));
            same
        };
        if let Some(f) = filter {
            caps = f.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
        }
        gst::log!(CAT, obj = pad, "caps query: {}", caps);
        caps
    }
}
