"""Reference fixtures for weft's LTX-Video text side (T5 v1.1 encoder + tokenizer).

Trains a tiny sentencepiece unigram tokenizer locally (deterministic, on the
docstrings of a fixed list of Python standard-library modules), builds a tiny
transformers `T5EncoderModel` from a config with random weights (seed 0), and
writes a snapshot-like layout under tests/fixtures/ltx/t5/:

  text_encoder/config.json, text_encoder/model.safetensors
  tokenizer/spiece.model, tokenizer/tokenizer_config.json,
  tokenizer/special_tokens_map.json          (no tokenizer.json: the Rust side
                                              must build the tokenizer itself)
  tokenizer_json/tokenizer.json              (transformers' fast tokenizer file,
                                              to test that path too)
  reference.safetensors: for each prompt i, max_sequence_length L:
      p{i}.ids [1, L] int64, p{i}.mask [1, L] int64 (the bool mask as 0/1),
      p{i}.embeds [1, L, d_model] float32: what LTXPipeline._get_t5_prompt_embeds
      returns (called on an object holding just tokenizer + text_encoder)
  prompts.json: the prompts and their max_sequence_length

Run from the repository root with torch==2.15.0 diffusers==0.42.1
transformers 5.x sentencepiece:

    /work/venv/bin/python scripts/ltx_reference/text.py
"""

import json
import os
import shutil
import types

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ltx", "t5")

PROMPTS = [
    ("A cat walks slowly along the garden wall, looking at the camera.", 32),
    ("", 32),
    (
        "The function returns a new list of strings; each element is the value of the "
        "attribute, formatted with the default encoding, and the result is written to the file.",
        16,
    ),
    ("  Leading  and   repeated spaces,\tTabs  and UPPER case: 1234 ü é!", 24),
]


def corpus():
    import argparse
    import collections
    import json as js
    import string
    import textwrap
    import pathlib
    import functools
    import itertools
    import re

    lines = []
    for m in (argparse, collections, js, string, textwrap, pathlib, functools, itertools, re):
        for name in sorted(dir(m)):
            doc = getattr(getattr(m, name), "__doc__", None)
            if isinstance(doc, str):
                lines.extend(x.strip() for x in doc.splitlines() if x.strip())
        if m.__doc__:
            lines.extend(x.strip() for x in m.__doc__.splitlines() if x.strip())
    return lines


def _varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        else:
            raise ValueError(wt)
        yield f, v


def precompiled_charsmap(model_bytes):
    for f, v in _fields(model_bytes):
        if f == 3:  # normalizer_spec
            for g, w in _fields(v):
                if g == 2:
                    return bytes(w)
    return None


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    tok_dir = os.path.join(ROOT, "tokenizer")
    enc_dir = os.path.join(ROOT, "text_encoder")
    os.makedirs(tok_dir)
    os.makedirs(enc_dir)
    lines = corpus()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=os.path.join(tok_dir, "spiece"),
        model_type="unigram",
        vocab_size=400,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        character_coverage=0.9995,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    os.remove(os.path.join(tok_dir, "spiece.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "spiece.model"))
    vocab_scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    with open(os.path.join(tok_dir, "spiece.model"), "rb") as f:
        charsmap = precompiled_charsmap(f.read())
    # what transformers' sentencepiece conversion builds (no protobuf module here)
    tok = T5Tokenizer(
        vocab=vocab_scores, _spm_precompiled_charsmap=charsmap, extra_ids=100, model_max_length=128
    )
    tmp = os.path.join(ROOT, "_tmp")
    tok.save_pretrained(tmp)
    os.makedirs(os.path.join(ROOT, "tokenizer_json"))
    shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(ROOT, "tokenizer_json", "tokenizer.json"))
    shutil.copy(os.path.join(tmp, "tokenizer_config.json"), os.path.join(tok_dir, "tokenizer_config.json"))
    stm = os.path.join(tmp, "special_tokens_map.json")
    if os.path.exists(stm):
        shutil.copy(stm, os.path.join(tok_dir, "special_tokens_map.json"))
    else:
        with open(os.path.join(tok_dir, "special_tokens_map.json"), "w") as f:
            json.dump(
                {
                    "eos_token": "</s>",
                    "pad_token": "<pad>",
                    "unk_token": "<unk>",
                    "additional_special_tokens": [f"<extra_id_{i}>" for i in range(100)],
                },
                f,
                indent=2,
            )
    shutil.rmtree(tmp)

    vocab = len(tok)
    cfg = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        d_ff=64,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        is_encoder_decoder=True,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model = T5EncoderModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    model.save_pretrained(enc_dir, safe_serialization=True)

    fake = types.SimpleNamespace(tokenizer=tok, text_encoder=model, _execution_device=torch.device("cpu"))
    out = {}
    for i, (p, L) in enumerate(PROMPTS):
        with torch.no_grad():
            emb, mask = LTXPipeline._get_t5_prompt_embeds(fake, prompt=p, max_sequence_length=L)
        ids = tok(p, padding="max_length", max_length=L, truncation=True, add_special_tokens=True,
                  return_tensors="pt").input_ids
        out[f"p{i}.ids"] = ids.to(torch.int64)
        out[f"p{i}.mask"] = mask.to(torch.int64)
        out[f"p{i}.embeds"] = emb.float().contiguous()
        print(i, ids[0].tolist()[:20], mask.sum().item())
    save_file(out, os.path.join(ROOT, "reference.safetensors"))
    with open(os.path.join(ROOT, "prompts.json"), "w") as f:
        json.dump([{"prompt": p, "max_sequence_length": L} for p, L in PROMPTS], f, indent=1, ensure_ascii=False)
    print("vocab", vocab, "sp pieces", spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "spiece.model")).get_piece_size())


if __name__ == "__main__":
    main()
