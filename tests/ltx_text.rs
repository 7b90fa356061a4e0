//! Parity of weft's LTX text side (T5 tokenizer + encoder) with transformers 5 /
//! diffusers 0.42.1 `LTXPipeline._get_t5_prompt_embeds`
//! (fixtures: scripts/ltx_reference/text.py).

use candle_core::{DType, Device};
use weft::model::ltx::text::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ltx/t5");

fn prompts() -> Vec<(String, usize)> {
    let t = std::fs::read_to_string(format!("{DIR}/prompts.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["prompt"].as_str().unwrap().to_string(),
                p["max_sequence_length"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

fn reference() -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(format!("{DIR}/reference.safetensors"), &Device::Cpu).unwrap()
}

fn check_tokenizer(tok: &T5Tokenizer, what: &str) {
    let r = reference();
    for (i, (p, l)) in prompts().iter().enumerate() {
        let want: Vec<i64> = r[&format!("p{i}.ids")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want_mask: Vec<i64> = r[&format!("p{i}.mask")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let got = tok.encode_padded(p, *l).unwrap();
        let ids: Vec<i64> = got.ids.iter().map(|&x| x as i64).collect();
        let mask: Vec<i64> = got.mask.iter().map(|&x| x as i64).collect();
        assert_eq!(ids, want, "{what}: ids of prompt {i} {p:?}");
        assert_eq!(mask, want_mask, "{what}: mask of prompt {i}");
    }
}

#[test]
fn spiece_tokenizer_matches_transformers() {
    let tok = T5Tokenizer::from_dir(format!("{DIR}/tokenizer")).unwrap();
    check_tokenizer(&tok, "spiece.model");
    assert_eq!(tok.inner().token_to_id("<extra_id_0>"), Some(400));
    assert_eq!(tok.inner().token_to_id("<extra_id_99>"), Some(499));
}

#[test]
fn tokenizer_json_matches_transformers() {
    let tok = T5Tokenizer::from_dir(format!("{DIR}/tokenizer_json")).unwrap();
    check_tokenizer(&tok, "tokenizer.json");
}

#[test]
fn truncation_and_padding() {
    let tok = T5Tokenizer::from_dir(format!("{DIR}/tokenizer")).unwrap();
    let ps = prompts();
    let long = &ps[2];
    let t = tok.encode_padded(&long.0, long.1).unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), long.1);
    assert_eq!(*t.ids.last().unwrap(), tok.eos_id, "truncation keeps </s>");
    let e = tok.encode_padded("", 8).unwrap();
    assert_eq!(e.ids, vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.mask, vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!e.truncated);
}

#[test]
fn prompt_embeds_match_pipeline() {
    let dev = Device::Cpu;
    let mut enc = LtxTextEncoder::load(DIR, DType::F32, &dev).unwrap();
    let r = reference();
    for (i, (p, l)) in prompts().iter().enumerate() {
        let out = enc.encode(&[p.as_str()], *l).unwrap();
        let want = &r[&format!("p{i}.embeds")];
        assert_eq!(out.embeds.dims(), want.dims());
        let a: Vec<f32> = out.embeds.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "prompt {i}: max diff {worst} (scale {scale})"
        );
        let mask: Vec<i64> = out
            .mask
            .to_dtype(DType::I64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want_mask: Vec<i64> = r[&format!("p{i}.mask")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(mask, want_mask);
    }
    // batched: same as one by one
    let ps = prompts();
    let out = enc
        .encode(&[ps[0].0.as_str(), ps[1].0.as_str()], 32)
        .unwrap();
    assert_eq!(out.embeds.dims(), &[2, 32, 32]);
    let a: Vec<f32> = out
        .embeds
        .get(1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = r["p1.embeds"].flatten_all().unwrap().to_vec1().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
    let rep = out.repeat(2).unwrap();
    assert_eq!(rep.embeds.dims(), &[4, 32, 32]);
    assert_eq!(rep.mask.dims(), &[4, 32]);

    // the empty-prompt cache
    let mut cache = EmptyPromptCache::new();
    let e1 = cache.get(&mut enc, 32).unwrap();
    let e2 = cache.get(&mut enc, 32).unwrap();
    assert_eq!(cache.len(), 1);
    let x: Vec<f32> = e1.embeds.flatten_all().unwrap().to_vec1().unwrap();
    let y: Vec<f32> = e2.embeds.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(x, y);
    assert!(x.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
}

#[test]
fn missing_text_encoder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = LtxTextEncoder::load(dir.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("text_encoder/"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn sentinel_ids_from_tokenizer_config() {
    // real T5 snapshots number the sentinels backwards (<extra_id_0> last) and
    // say so in tokenizer_config.json's added_tokens_decoder
    let bytes = std::fs::read(format!("{DIR}/tokenizer/spiece.model")).unwrap();
    let mut dec = serde_json::Map::new();
    for i in 0..100 {
        dec.insert(
            (499 - i).to_string(),
            serde_json::json!({ "content": format!("<extra_id_{i}>"), "special": true }),
        );
    }
    let cfg = serde_json::json!({ "added_tokens_decoder": dec, "extra_ids": 100 });
    let tok = T5Tokenizer::from_spiece(&bytes, Some(&cfg), None).unwrap();
    assert_eq!(tok.inner().token_to_id("<extra_id_0>"), Some(499));
    assert_eq!(tok.inner().token_to_id("<extra_id_99>"), Some(400));
    let ids = tok.encode("a <extra_id_0> b").unwrap();
    assert!(ids.contains(&499), "{ids:?}");
    check_tokenizer(&tok, "spiece.model + added_tokens_decoder");
}
