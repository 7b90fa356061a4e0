//! How many real frames a job reads around the frames it generates, asked of
//! the model: streaming callers (the GStreamer elements, the ffmpeg
//! pipeline) hold that many and no more, so what they hand [`run_plan`]
//! generates what the whole clip would.
//!
//! [`run_plan`]: super::run_plan

use super::GenerateOptions;
use crate::model::Model;
use crate::model::ltx::load::LtxInspection;

/// Known frames an extension conditions on at least: the default model's
/// motion prior checks on the third whether continuing the motion beats
/// holding the last frame.
pub const MIN_EXTEND_CONTEXT: usize = 3;

/// Real frames a job conditions on: `before` a gap (its nearest ones),
/// `after` it (the far side, which also sets how long a streaming caller
/// waits before it can fill the gap), and `extend`, the last (or, backward,
/// first) frames of a clip an extension continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextFrames {
    pub before: usize,
    pub after: usize,
    pub extend: usize,
}

impl Default for ContextFrames {
    /// weft's own models with the default options.
    fn default() -> Self {
        context_frames(ContextModel::Weft, &GenerateOptions::default())
    }
}

/// What the context of a model depends on, known without its weights (an
/// LTX-Video checkpoint's configs say it, see [`LtxInspection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextModel {
    /// weft's transformer or the embedded interpolator: windows of
    /// [`GenerateOptions::context`] frames a side.
    Weft,
    /// LTX-Video: frames per latent frame (the VAE's temporal compression
    /// times the transformer's temporal patch), which its lead frames are
    /// a multiple of (plus one).
    Ltx { temporal_multiple: usize },
}

impl From<&Model> for ContextModel {
    fn from(m: &Model) -> Self {
        match m.ltx() {
            Some(l) => ContextModel::Ltx { temporal_multiple: crate::model::ltx::generate::temporal_multiple(l) },
            None => ContextModel::Weft,
        }
    }
}

impl From<&LtxInspection> for ContextModel {
    fn from(i: &LtxInspection) -> Self {
        ContextModel::Ltx { temporal_multiple: i.temporal_multiple() }
    }
}

/// The real frames `model` conditions on with `opts`. weft's models:
/// [`GenerateOptions::context`] a side, at least [`MIN_EXTEND_CONTEXT`] for
/// an extension. LTX-Video: its window lead before a gap and for an
/// extension ([`lead_frames`]), [`LtxSettings::after`] after a gap.
///
/// [`LtxSettings::after`]: crate::model::ltx::generate::LtxSettings::after
pub fn context_frames(model: impl Into<ContextModel>, opts: &GenerateOptions) -> ContextFrames {
    match model.into() {
        ContextModel::Weft => ContextFrames {
            before: opts.context,
            after: opts.context,
            extend: opts.context.max(MIN_EXTEND_CONTEXT),
        },
        ContextModel::Ltx { temporal_multiple } => {
            let lead = lead_frames(&opts.ltx, temporal_multiple);
            ContextFrames { before: lead, after: opts.ltx.after, extend: lead }
        }
    }
}

/// The fixed frames that lead each LTX-Video window, in place as one video
/// condition: [`LtxSettings::context`] at most, less than the window, rounded
/// down to `k * temporal_multiple + 1` (at least 1).
///
/// [`LtxSettings::context`]: crate::model::ltx::generate::LtxSettings::context
pub fn lead_frames(s: &crate::model::ltx::generate::LtxSettings, temporal_multiple: usize) -> usize {
    let tc = temporal_multiple.max(1);
    let window = crate::model::ltx::generate::frames_for(s.window, tc);
    (s.context.min(window - 1).saturating_sub(1) / tc) * tc + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ltx::generate::LtxSettings;

    #[test]
    fn weft_models_read_two_a_side_and_three_to_extend() {
        let c = context_frames(ContextModel::Weft, &GenerateOptions::default());
        assert_eq!(c, ContextFrames { before: 2, after: 2, extend: MIN_EXTEND_CONTEXT });
        assert_eq!(MIN_EXTEND_CONTEXT, 3);
        let wide = GenerateOptions { context: 5, ..Default::default() };
        assert_eq!(context_frames(ContextModel::Weft, &wide), ContextFrames { before: 5, after: 5, extend: 5 });
    }

    #[test]
    fn ltx_leads_are_a_temporal_multiple_plus_one() {
        let opts = GenerateOptions::default();
        // The defaults: a 17-frame lead (2 latent frames of 8, or 4 of 4), 2 after.
        for tc in [4, 8] {
            let c = context_frames(ContextModel::Ltx { temporal_multiple: tc }, &opts);
            assert_eq!(c, ContextFrames { before: 17, after: 2, extend: 17 }, "temporal multiple {tc}");
        }
        let ltx = |context, window| LtxSettings { context, window, ..Default::default() };
        assert_eq!(lead_frames(&ltx(20, 49), 8), 17);
        assert_eq!(lead_frames(&ltx(20, 49), 4), 17);
        assert_eq!(lead_frames(&ltx(25, 49), 8), 25);
        assert_eq!(lead_frames(&ltx(7, 49), 8), 1);
        // Never the whole window: a 9-frame window leaves one slot to generate.
        assert_eq!(lead_frames(&ltx(17, 9), 8), 1);
        assert_eq!(lead_frames(&ltx(17, 9), 4), 5);
    }
}
