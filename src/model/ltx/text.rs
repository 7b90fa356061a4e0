//! The text side of LTX-Video: the T5 v1.1 tokenizer and encoder, producing
//! `prompt_embeds` / `prompt_attention_mask` exactly as diffusers'
//! `LTXPipeline._get_t5_prompt_embeds` (0.42.1) returns them:
//!
//! * the prompt is tokenized with `</s>` appended, truncated to
//!   `max_sequence_length` tokens (128 by default; the `</s>` is kept, the
//!   tail of a too-long prompt is dropped, as the pipeline does after a
//!   warning) and padded with `<pad>` (id 0) to exactly that length;
//! * the attention mask is 1 on the real tokens (including `</s>`), 0 on the
//!   padding;
//! * the encoder runs on the padded ids **without** the mask (the pipeline
//!   calls `text_encoder(text_input_ids)`), so padded positions carry real,
//!   non-zero embeddings; nothing is zeroed or multiplied. The mask goes to the
//!   transformer's cross-attention instead.
//!
//! The encoder is candle-transformers' `T5EncoderModel` (HF tensor names
//! `shared.weight`, `encoder.block.N.layer.*`, `encoder.final_layer_norm`).
//!
//! Tokenizer: `tokenizer/tokenizer.json` when the snapshot has one; otherwise
//! built from `tokenizer/spiece.model` (sentencepiece protobuf, read by a small
//! reader here) the way transformers' T5 conversion does: Unigram over the
//! pieces and scores, the model's precompiled normalisation charsmap,
//! whitespace split + Metaspace (`▁`, always prepended), `$A </s>`, and the
//! `<extra_id_N>` sentinels as special added tokens (ids from
//! `tokenizer_config.json`'s `added_tokens_decoder` or `added_tokens.json`
//! when present, else appended after the pieces in order, as transformers 5
//! does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor, bail};
use candle_transformers::models::t5::{Config as T5Config, T5EncoderModel};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// LTX pipelines' default `max_sequence_length`.
pub const DEFAULT_MAX_SEQUENCE_LENGTH: usize = 128;

fn err(msg: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(msg.to_string())
}

// ---------------------------------------------------------------- spiece.model

/// One sentencepiece vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SpPiece {
    pub piece: String,
    pub score: f32,
    /// 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
    pub kind: u32,
}

/// What weft needs from a sentencepiece `ModelProto`.
#[derive(Debug, Clone, Default)]
pub struct SpModel {
    pub pieces: Vec<SpPiece>,
    pub precompiled_charsmap: Vec<u8>,
    pub byte_fallback: bool,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64> {
    let (mut v, mut s) = (0u64, 0u32);
    loop {
        let Some(&c) = b.get(*i) else {
            bail!("spiece.model: truncated varint")
        };
        *i += 1;
        if s < 64 {
            v |= u64::from(c & 0x7f) << s;
        }
        s += 7;
        if c < 0x80 {
            return Ok(v);
        }
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
    Other,
}

/// Iterates the (field number, value) pairs of a protobuf message.
fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>> {
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (f, wt) = (key >> 3, key & 7);
        let v = match wt {
            0 => Field::Varint(varint(b, &mut i)?),
            1 => {
                i += 8;
                Field::Other
            }
            2 => {
                let n = varint(b, &mut i)? as usize;
                let Some(s) = i.checked_add(n).and_then(|end| b.get(i..end)) else {
                    bail!("spiece.model: truncated field {f}")
                };
                i += n;
                Field::Bytes(s)
            }
            5 => {
                let Some(s) = b.get(i..i + 4) else {
                    bail!("spiece.model: truncated field {f}")
                };
                i += 4;
                Field::Fixed32([s[0], s[1], s[2], s[3]])
            }
            _ => bail!("spiece.model: unsupported protobuf wire type {wt}"),
        };
        if i > b.len() {
            bail!("spiece.model: truncated");
        }
        out.push((f, v));
    }
    Ok(out)
}

impl SpModel {
    /// Parses a sentencepiece `ModelProto` (`spiece.model`).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut m = SpModel::default();
        for (f, v) in fields(bytes)? {
            match (f, v) {
                (1, Field::Bytes(p)) => {
                    let mut piece = SpPiece {
                        piece: String::new(),
                        score: 0.0,
                        kind: 1,
                    };
                    for (g, w) in fields(p)? {
                        match (g, w) {
                            (1, Field::Bytes(s)) => {
                                piece.piece = String::from_utf8(s.to_vec())
                                    .map_err(|_| err("spiece.model: piece is not UTF-8"))?
                            }
                            (2, Field::Fixed32(x)) => piece.score = f32::from_le_bytes(x),
                            (3, Field::Varint(t)) => piece.kind = t as u32,
                            _ => {}
                        }
                    }
                    m.pieces.push(piece);
                }
                (2, Field::Bytes(t)) => {
                    for (g, w) in fields(t)? {
                        if let (35, Field::Varint(x)) = (g, w) {
                            m.byte_fallback = x != 0;
                        }
                    }
                }
                (3, Field::Bytes(n)) => {
                    for (g, w) in fields(n)? {
                        if let (2, Field::Bytes(c)) = (g, w) {
                            m.precompiled_charsmap = c.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            bail!("spiece.model: no pieces (not a sentencepiece model?)");
        }
        Ok(m)
    }
}

// ------------------------------------------------------------------ tokenizer

/// T5's tokenizer as the LTX pipelines use it.
pub struct T5Tokenizer {
    tokenizer: Tokenizer,
    pub pad_id: u32,
    pub eos_id: u32,
}

/// Token ids of one prompt, padded to `max_sequence_length`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTokens {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    /// True when the prompt did not fit and its tail was dropped.
    pub truncated: bool,
}

fn read_json(p: &Path) -> Result<Option<serde_json::Value>> {
    if !p.is_file() {
        return Ok(None);
    }
    let t = std::fs::read_to_string(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&t)
        .map(Some)
        .map_err(|e| err(format!("{}: {e}", p.display())))
}

/// tokenizers 0.23 panics (an `expect`) on a `Precompiled` normalizer it
/// cannot read: those are read here first, so that a damaged tokenizer.json
/// is an error. (A file that is not JSON is left to the tokenizer to report.)
fn check_precompiled(path: &Path) -> Result<()> {
    fn walk<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                    out.push(v);
                }
                m.values().for_each(|c| walk(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap_or_default()) else {
        return Ok(());
    };
    let mut found = vec![];
    if let Some(n) = v.get("normalizer") {
        walk(n, &mut found);
    }
    for p in found {
        // From text, as tokenizers reads it (the charsmap is a borrowed string).
        serde_json::from_str::<tokenizers::normalizers::Precompiled>(&p.to_string()).map_err(|e| {
            err(format!("{}: its Precompiled normalizer is damaged: {}", path.display(), brief(e)))
        })?;
    }
    Ok(())
}

/// An error message of a readable length: serde quotes the value it
/// rejects, which in a damaged tokenizer.json can be a 300 KB string.
fn brief(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    if s.chars().count() > 300 { format!("{}...", s.chars().take(300).collect::<String>()) } else { s }
}

impl T5Tokenizer {
    /// A snapshot's `tokenizer/` folder (or the snapshot root containing it).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let mut dir = dir.as_ref().to_path_buf();
        if dir.join("tokenizer").is_dir() {
            dir = dir.join("tokenizer");
        }
        let tj = dir.join("tokenizer.json");
        if tj.is_file() {
            return Self::from_tokenizer_json(&tj);
        }
        let sp = dir.join("spiece.model");
        if !sp.is_file() {
            bail!(
                "{}: no tokenizer.json or spiece.model (T5 tokenizer)",
                dir.display()
            );
        }
        let bytes = std::fs::read(&sp).map_err(|e| err(format!("{}: {e}", sp.display())))?;
        let cfg = read_json(&dir.join("tokenizer_config.json"))?;
        let added = read_json(&dir.join("added_tokens.json"))?;
        Self::from_spiece(&bytes, cfg.as_ref(), added.as_ref())
    }

    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        check_precompiled(path)?;
        let mut tokenizer =
            Tokenizer::from_file(path).map_err(|e| err(format!("{}: {}", path.display(), brief(e))))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let pad_id = tokenizer.token_to_id("<pad>").unwrap_or(0);
        let Some(eos_id) = tokenizer.token_to_id("</s>") else {
            bail!("{}: no </s> token", path.display());
        };
        Ok(Self {
            tokenizer,
            pad_id,
            eos_id,
        })
    }

    /// Builds the tokenizer from `spiece.model` bytes, plus the folder's
    /// `tokenizer_config.json` / `added_tokens.json` when there are any.
    pub fn from_spiece(
        model: &[u8],
        tokenizer_config: Option<&serde_json::Value>,
        added_tokens: Option<&serde_json::Value>,
    ) -> Result<Self> {
        let sp = SpModel::parse(model)?;
        let mut vocab: Vec<(String, f64)> = sp
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), p.score as f64))
            .collect();
        let unk_id = sp.pieces.iter().position(|p| p.kind == 2).unwrap_or(2);
        // sentinel / added tokens: explicit id maps first
        let mut explicit: Vec<(usize, String)> = vec![];
        if let Some(dec) = tokenizer_config
            .and_then(|c| c.get("added_tokens_decoder"))
            .and_then(|d| d.as_object())
        {
            for (k, v) in dec {
                if let (Ok(id), Some(c)) = (
                    k.parse::<usize>(),
                    v.get("content").and_then(|c| c.as_str()),
                ) {
                    explicit.push((id, c.to_string()));
                }
            }
        }
        if explicit.is_empty()
            && let Some(a) = added_tokens.and_then(|a| a.as_object())
        {
            for (k, v) in a {
                if let Some(id) = v.as_u64() {
                    explicit.push((id as usize, k.clone()));
                }
            }
        }
        let mut specials: Vec<String> = vec![];
        if explicit.is_empty() {
            let extra = tokenizer_config
                .and_then(|c| c.get("extra_ids"))
                .and_then(|x| x.as_u64())
                .unwrap_or(100) as usize;
            specials.extend((0..extra).map(|i| format!("<extra_id_{i}>")));
        } else {
            explicit.sort();
            for (id, content) in &explicit {
                if *id >= vocab.len() {
                    while vocab.len() < *id {
                        vocab.push((format!("<unused_{}>", vocab.len()), 0.0));
                    }
                    vocab.push((content.clone(), 0.0));
                }
                specials.push(content.clone());
            }
        }
        let model = Unigram::from(vocab, Some(unk_id), sp.byte_fallback)
            .map_err(|e| err(format!("spiece.model: {e}")))?;
        let mut tokenizer = Tokenizer::new(model);
        if !sp.precompiled_charsmap.is_empty() {
            let pc = Precompiled::from(&sp.precompiled_charsmap)
                .map_err(|e| err(format!("spiece.model charsmap: {e}")))?;
            tokenizer
                .with_normalizer(Some(pc))
                .map_err(|e| err(format!("tokenizer: {e}")))?;
        }
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
            PreTokenizerWrapper::Metaspace(Metaspace::new('▁', PrependScheme::Always, true)),
        ])));
        let mut all_specials = vec!["<pad>".to_string(), "</s>".to_string(), "<unk>".to_string()];
        all_specials.extend(specials);
        let added: Vec<AddedToken> = all_specials
            .iter()
            .map(|s| AddedToken::from(s.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(added)
            .map_err(|e| err(format!("tokenizer: {e}")))?;
        let pad_id = tokenizer.token_to_id("<pad>").unwrap_or(0);
        let Some(eos_id) = tokenizer.token_to_id("</s>") else {
            bail!("spiece.model: no </s> piece")
        };
        let post = TemplateProcessing::builder()
            .try_single("$A </s>")
            .map_err(|e| err(format!("tokenizer template: {e}")))?
            .special_tokens(vec![("</s>", eos_id)])
            .build()
            .map_err(|e| err(format!("tokenizer template: {e}")))?;
        tokenizer.with_post_processor(Some(post));
        Ok(Self {
            tokenizer,
            pad_id,
            eos_id,
        })
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Ids with `</s>`, unpadded and untruncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_raw(text)?;
        ids.push(self.eos_id);
        Ok(ids)
    }

    fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| err(format!("tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `tokenizer(prompt, padding="max_length", max_length=L, truncation=True,
    /// add_special_tokens=True)`: ids and attention mask of length `L`.
    pub fn encode_padded(&self, text: &str, max_length: usize) -> Result<PromptTokens> {
        if max_length == 0 {
            bail!("max_sequence_length must be positive");
        }
        let mut ids = self.encode_raw(text)?;
        let truncated = ids.len() > max_length - 1;
        ids.truncate(max_length - 1);
        ids.push(self.eos_id);
        let n = ids.len();
        let mut mask = vec![1u8; n];
        ids.resize(max_length, self.pad_id);
        mask.resize(max_length, 0);
        Ok(PromptTokens {
            ids,
            mask,
            truncated,
        })
    }
}

// -------------------------------------------------------------------- encoder

/// What `_get_t5_prompt_embeds` returns.
#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    /// `[B, L, d_model]`, the encoder's output at every position (padding included).
    pub embeds: Tensor,
    /// `[B, L]` u8, 1 on real tokens (with `</s>`), 0 on padding.
    pub mask: Tensor,
    /// Per prompt, whether its tail was cut at `max_sequence_length`.
    pub truncated: Vec<bool>,
}

impl PromptEmbeds {
    /// `num_videos_per_prompt` copies of each prompt (`repeat` as the pipeline).
    pub fn repeat(&self, n: usize) -> Result<Self> {
        let (b, l, d) = self.embeds.dims3()?;
        let embeds = self
            .embeds
            .unsqueeze(1)?
            .repeat((1, n, 1, 1))?
            .reshape((b * n, l, d))?;
        // the pipeline's mask repeat is (n, 1): batch-major tiling
        let mask = self.mask.repeat((n, 1))?;
        let truncated = (0..n).flat_map(|_| self.truncated.clone()).collect();
        Ok(Self {
            embeds,
            mask,
            truncated,
        })
    }
}

/// The snapshot's T5 tokenizer and encoder.
pub struct LtxTextEncoder {
    pub tokenizer: T5Tokenizer,
    model: T5EncoderModel,
    pub config: T5Config,
    pub dtype: DType,
    device: Device,
    /// Where it was loaded from (the cache key of [`EmptyPromptCache`]).
    pub source: PathBuf,
}

/// The safetensors files of a (possibly sharded) model folder.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if let Some(idx) = read_json(&index)? {
        let Some(map) = idx.get("weight_map").and_then(|m| m.as_object()) else {
            bail!("{}: no weight_map", index.display());
        };
        let mut files: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no safetensors weights", dir.display());
    }
    Ok(files)
}

impl LtxTextEncoder {
    /// Loads `<snapshot>/text_encoder` and `<snapshot>/tokenizer`.
    pub fn load(snapshot: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        let root = snapshot.as_ref();
        let enc_dir = root.join("text_encoder");
        if !enc_dir.is_dir() {
            // a plain message (no backtrace): one line for the command line
            return Err(err(format!(
                "LTX snapshot {}: missing text_encoder/ folder (the T5 encoder)",
                root.display()
            )));
        }
        let tok_dir = root.join("tokenizer");
        if !tok_dir.is_dir() {
            return Err(err(format!(
                "LTX snapshot {}: missing tokenizer/ folder (the T5 tokenizer)",
                root.display()
            )));
        }
        let tokenizer = T5Tokenizer::from_dir(&tok_dir)?;
        let cfg_path = enc_dir.join("config.json");
        let Some(cfg) = read_json(&cfg_path)? else {
            bail!("{}: missing", cfg_path.display());
        };
        let config: T5Config =
            serde_json::from_value(cfg).map_err(|e| err(format!("{}: {e}", cfg_path.display())))?;
        let files = safetensors_files(&enc_dir)?;
        // Read tensor by tensor (a memory map would keep T5's file resident
        // beside the loaded copy: twice the memory at its peak).
        let vb = super::load::read_var_builder(&files, dtype, device)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let model = T5EncoderModel::load(vb, &config)?;
        Ok(Self {
            tokenizer,
            model,
            config,
            dtype,
            device: device.clone(),
            source: root.to_path_buf(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids `[B, L]` (u32) and masks of a batch of prompts.
    pub fn tokenize(
        &self,
        prompts: &[&str],
        max_sequence_length: usize,
    ) -> Result<Vec<PromptTokens>> {
        prompts
            .iter()
            .map(|p| self.tokenizer.encode_padded(p, max_sequence_length))
            .collect()
    }

    /// `_get_t5_prompt_embeds(prompts, max_sequence_length=L)`.
    pub fn encode(&mut self, prompts: &[&str], max_sequence_length: usize) -> Result<PromptEmbeds> {
        if prompts.is_empty() {
            bail!("encode: no prompts");
        }
        let toks = self.tokenize(prompts, max_sequence_length)?;
        let b = toks.len();
        let ids: Vec<u32> = toks.iter().flat_map(|t| t.ids.iter().copied()).collect();
        let mask: Vec<u8> = toks.iter().flat_map(|t| t.mask.iter().copied()).collect();
        let ids = Tensor::from_vec(ids, (b, max_sequence_length), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, max_sequence_length), &self.device)?;
        let embeds = self.model.forward(&ids)?;
        Ok(PromptEmbeds {
            embeds,
            mask,
            truncated: toks.iter().map(|t| t.truncated).collect(),
        })
    }
}

/// Caches the embedding of the empty prompt (`""`, the unconditional /
/// text-free input) per encoder (its snapshot path) and sequence length, so
/// text-free use runs T5 once.
#[derive(Default)]
pub struct EmptyPromptCache {
    map: HashMap<(PathBuf, usize), PromptEmbeds>,
}

impl EmptyPromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[1, L, d]` embeddings and `[1, L]` mask of `""`.
    pub fn get(
        &mut self,
        encoder: &mut LtxTextEncoder,
        max_sequence_length: usize,
    ) -> Result<PromptEmbeds> {
        let key = (encoder.source.clone(), max_sequence_length);
        if let Some(e) = self.map.get(&key) {
            return Ok(e.clone());
        }
        let e = encoder.encode(&[""], max_sequence_length)?;
        self.map.insert(key, e.clone());
        Ok(e)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}
