"""diffusers' side of `scripts/bench-ltx` (weft's LTX-Video vs diffusers 0.42.1).

Subcommands (all paths under one scratch directory, default data/bench/ltx):

  make DIR      seeded random weights for the full-size LTX-Video 2B transformer
                (0.9.5 config = diffusers' defaults) and the 0.9.5 VAE, saved as
                DIR/transformer/ and DIR/vae/ (config.json + f32
                diffusion_pytorch_model.safetensors, loadable by from_pretrained
                and by weft), and the inputs of every case (DIR/inputs.safetensors).
                Reuses what is already there (DIR/stamp.json records the seeds).
                --layers N: only the transformer, cut to its first N blocks (same
                width; for profiling a few blocks quickly; no VAE).
  run DIR       time diffusers on the cases: --model transformer|vae, --dtype
                f32|bf16, --cases small,large; writes its outputs to --out and one
                JSON line per case (seconds, peak resident MiB) to stdout.
  compare A B   max abs / relative error of every tensor of A against B (JSON).

Cases (batch 1, i.e. one CFG branch; text: 128 T5 tokens, 48 unmasked):
  small  512x320, 25 frames -> latents 4x10x16 = 640 tokens
  large  768x512, 49 frames -> latents 7x16x24 = 2688 tokens
Transformer: one forward (= one denoising step without CFG batching) at
timestep 700, rope_interpolation_scale (8/25, 32, 32). VAE: one decode of
random latents of the same grid at decode timestep 0.05 (no tiling, as the
pipelines' default).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

CASES = {"small": (512, 320, 25), "large": (768, 512, 49)}
# The encoder alone also takes "cond": the 17 frames a job's video condition encodes.
ENCODER_CASES = {**CASES, "cond": (512, 320, 17)}
TEXT_LEN, TEXT_VALID = 128, 48
TIMESTEP, DECODE_T, FRAME_RATE = 700.0, 0.05, 25
SEED = 20240501

LTX_2B = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
    num_attention_heads=32, attention_head_dim=64, cross_attention_dim=2048,
    num_layers=28, activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096,
    attention_bias=True, attention_out_bias=True,
)

VAE_095 = dict(
    in_channels=3, out_channels=3, latent_channels=128,
    block_out_channels=(128, 256, 512, 1024, 2048),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
    timestep_conditioning=True, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6,
    scaling_factor=1.0, encoder_causal=True, decoder_causal=False,
    spatial_compression_ratio=32, temporal_compression_ratio=8,
)


def latent_grid(case):
    w, h, f = ENCODER_CASES[case]
    return (f - 1) // 8 + 1, h // 32, w // 32


def status(key):
    """A field of /proc/self/status in MiB (VmHWM, VmRSS)."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return -1


def cpu_seconds():
    """User + system CPU seconds of this process (all threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def save_streaming(state, path):
    """safetensors.torch.save_file without a second in-memory copy of the
    weights (it serialises every tensor to bytes first: +8 GB for the 2B f32
    model): the header, then each tensor's bytes in turn."""
    import torch

    names = list(state)
    header, off = {}, 0
    codes = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    for k in names:
        t = state[k]
        n = t.numel() * t.element_size()
        header[k] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = str(path) + ".part"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for k in names:
            t = state[k].detach().contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(t.numpy().tobytes())
    os.replace(tmp, path)


def save_model(model, d):
    d.mkdir(parents=True, exist_ok=True)
    model.save_config(d)
    save_streaming(model.state_dict(), d / "diffusion_pytorch_model.safetensors")


def make(args):
    import torch

    d = Path(args.dir)
    stamp = {"seed": SEED, "cases": CASES, "text": [TEXT_LEN, TEXT_VALID], "v": 1}
    if args.layers:
        stamp["layers"] = args.layers
    stamp_file = d / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == json.loads(json.dumps(stamp)):
        print(f"reusing {d}", file=sys.stderr)
        return
    d.mkdir(parents=True, exist_ok=True)
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    t0 = time.time()
    # Default PyTorch/diffusers initialisation (Linear/Conv: U(+-1/sqrt(fan_in)),
    # scale_shift_tables: N(0, 1/dim)) with fixed seeds: sensible activation scales.
    torch.manual_seed(SEED)
    model = LTXVideoTransformer3DModel(**{**LTX_2B, "num_layers": args.layers or LTX_2B["num_layers"]}).eval()
    save_model(model, d / "transformer")
    del model
    print(f"transformer written ({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.layers:
        write_inputs(d)
        stamp_file.write_text(json.dumps(stamp))
        return
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKLLTXVideo(**VAE_095).eval()
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(128, generator=g) * 0.1)
        vae.latents_std.copy_(torch.rand(128, generator=g) + 0.5)
    save_model(vae, d / "vae")
    del vae
    write_inputs(d)
    stamp_file.write_text(json.dumps(stamp))
    print(f"bench files written to {d} ({time.time() - t0:.0f} s)", file=sys.stderr)


def write_inputs(d):
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(SEED + 3)
    io = {}
    for case in CASES:
        f, h, w = latent_grid(case)
        io[f"{case}.hidden_states"] = torch.randn((1, f * h * w, 128), generator=g)
        io[f"{case}.latents"] = torch.randn((1, 128, f, h, w), generator=g)
    io["encoder_hidden_states"] = torch.randn((1, TEXT_LEN, 4096), generator=g)
    mask = torch.zeros((1, TEXT_LEN))
    mask[:, :TEXT_VALID] = 1
    io["encoder_attention_mask"] = mask
    save_file({k: v.contiguous() for k, v in io.items()}, str(d / "inputs.safetensors"))


def run(args):
    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(args.threads or os.cpu_count())
    d = Path(args.dir)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    io = load_file(str(d / "inputs.safetensors"))
    t0 = time.time()
    if args.model == "transformer":
        from diffusers import LTXVideoTransformer3DModel

        model = LTXVideoTransformer3DModel.from_pretrained(d / "transformer", torch_dtype=dtype).eval()
    else:
        from diffusers import AutoencoderKLLTXVideo

        model = AutoencoderKLLTXVideo.from_pretrained(d / "vae", torch_dtype=dtype).eval()
    load_s = time.time() - t0
    load_peak = status("VmHWM")
    print(json.dumps({"event": "loaded", "seconds": round(load_s, 2), "load_peak_mib": round(load_peak),
                      "rss_mib": round(status("VmRSS"))}), flush=True)
    outs = {}
    with torch.inference_mode():
        for case in args.cases.split(","):
            f, h, w = latent_grid(case)
            reset_peak()
            if args.model == "transformer":
                kw = dict(
                    hidden_states=io[f"{case}.hidden_states"].to(dtype),
                    encoder_hidden_states=io["encoder_hidden_states"].to(dtype),
                    timestep=torch.tensor([TIMESTEP]),
                    encoder_attention_mask=io["encoder_attention_mask"],
                    num_frames=f, height=h, width=w,
                    rope_interpolation_scale=(8 / FRAME_RATE, 32, 32),
                    return_dict=False,
                )
                fn = lambda: model(**kw)[0]  # noqa: E731
            elif args.model == "encoder":
                # ltx_bench's encoder_input: 0.9 sin(0.05 x + 0.07 y + 0.3 f + c).
                nf, hh, ww = (f - 1) * 8 + 1, h * 32, w * 32
                c_ = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1)
                f_ = torch.arange(nf, dtype=torch.float32).view(1, nf, 1, 1)
                y_ = torch.arange(hh, dtype=torch.float32).view(1, 1, hh, 1)
                x_ = torch.arange(ww, dtype=torch.float32).view(1, 1, 1, ww)
                video = (0.9 * torch.sin(0.05 * x_ + 0.07 * y_ + 0.3 * f_ + c_))[None].to(dtype)
                fn = lambda: model.encoder(video)  # noqa: E731
            else:
                z = io[f"{case}.latents"].to(dtype)
                temb = torch.tensor([DECODE_T], dtype=dtype)
                fn = lambda: model.decode(z, temb, return_dict=False)[0]  # noqa: E731
            best = best_cpu = None
            for _ in range(args.repeat):
                t, c = time.time(), cpu_seconds()
                out = fn()
                s, cs = time.time() - t, cpu_seconds() - c
                best = s if best is None else min(best, s)
                best_cpu = cs if best_cpu is None else min(best_cpu, cs)
            outs[case] = out.float().contiguous()
            print(json.dumps({"event": "case", "case": case, "seconds": round(best, 3),
                              "cpu_seconds": round(best_cpu, 3),
                              "peak_mib": round(status("VmHWM"))}), flush=True)
            del out
    if args.out:
        save_file(outs, args.out)


def matmul(args):
    """GFLOP/s of torch's 640x2048 @ 2048x8192 (F.linear, as diffusers' layers)."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    m, k, n = 640, 2048, 8192
    res = {}
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(m, k).to(dt)
        w = (torch.randn(n, k) * 0.02).to(dt)
        with torch.inference_mode():
            torch.nn.functional.linear(x, w)
            best = 1e9
            for _ in range(5):
                t = time.time()
                torch.nn.functional.linear(x, w)
                best = min(best, time.time() - t)
        res[name] = round(2 * m * k * n / best / 1e9)
    print(json.dumps({"event": "matmul", "shape": [m, k, n], "torch_gflops": res}))


def conv3d(args):
    """Seconds and GFLOP/s of one causal 3x3x3 convolution as diffusers'
    LTXVideoCausalConv3d runs it (first frame repeated twice, nn.Conv3d with
    spatial padding 1), f32; with --fused, the resnet's RMS norm + SiLU before
    it and the residual after (FLOPs count the convolution only)."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    ci, co, t, h, w = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(1, ci, t, h, w)
    conv = torch.nn.Conv3d(ci, co, 3, padding=(0, 1, 1))

    def step():
        y = x
        if args.fused:
            y = y * torch.rsqrt(y.pow(2).mean(1, keepdim=True) + 1e-6)
            y = torch.nn.functional.silu(y)
        y = torch.cat([y[:, :, :1]] * 2 + [y], dim=2)
        y = conv(y)
        return y + x if args.fused else y

    with torch.inference_mode():
        step()
        best = 1e9
        for _ in range(args.repeat):
            s = time.time()
            step()
            best = min(best, time.time() - s)
    flop = 2 * ci * co * 27 * t * h * w
    print(json.dumps({"event": "conv3d", "shape": [ci, co, t, h, w], "fused": args.fused,
                      "torch_s": round(best, 4), "torch_gflops": round(flop / best / 1e9)}))


def attention(args):
    """Seconds and GFLOP/s of torch's SDPA for one self-attention of the 2B
    transformer (32 heads of 64) at 640 and 2688 tokens (diffusers' path)."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    for s in (640, 2688):
        for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            q, k, v = (torch.randn(1, 32, s, 64).to(dt) for _ in range(3))
            with torch.inference_mode():
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
                best = 1e9
                for _ in range(2):
                    t = time.time()
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    best = min(best, time.time() - t)
            print(json.dumps({"event": "attention", "tokens": s, "dtype": name, "seconds": round(best, 3),
                              "gflops": round(4 * s * s * 2048 / best / 1e9),
                              "per_step_28_layers_s": round(best * 28, 1)}))


def compare(args):
    from safetensors.torch import load_file

    a, b = load_file(args.a), load_file(args.b)
    res = {}
    for k in sorted(set(a) & set(b)):
        x, y = a[k].double(), b[k].double()
        if x.shape != y.shape:
            res[k] = {"error": f"shape {list(x.shape)} vs {list(y.shape)}"}
            continue
        e = (x - y).abs()
        res[k] = {
            "max_abs": e.max().item(),
            "max_ref": y.abs().max().item(),
            "rel": (e.max() / y.abs().max()).item(),
            "rel_l2": ((x - y).norm() / y.norm()).item(),
        }
    print(json.dumps(res))


def report(args):
    """The table of scripts/bench-ltx from the runs' JSON lines in DIR/out."""
    out = Path(args.dir) / "out"

    def events(fw, model, dtype):
        f = out / f"{fw}_{model}_{dtype}.jsonl"
        if not f.exists():
            return None, {}
        loaded, cases = None, {}
        for line in f.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "loaded":
                loaded = e
            elif e.get("event") == "case":
                cases[e["case"]] = e
        return loaded, cases

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    rows = []
    hdr = ("model", "case", "dtype", "weft_s", "diffusers_s", "ratio", "weft_cpu_s", "diff_cpu_s", "ratio",
           "weft_peak_MiB", "diff_peak_MiB", "ratio", "weft_load_peak", "diff_load_peak")
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            wl, wc = events("weft", model, dtype)
            dl, dc = events("diffusers", model, dtype)
            for case in args.cases.split(","):
                w, d = wc.get(case), dc.get(case)
                if not w and not d:
                    continue
                g = lambda e, k: e.get(k) if e else None  # noqa: E731
                rows.append((
                    model, case, dtype,
                    g(w, "seconds") or "-", g(d, "seconds") or "-", ratio(g(w, "seconds"), g(d, "seconds")),
                    g(w, "cpu_seconds") or "-", g(d, "cpu_seconds") or "-",
                    ratio(g(w, "cpu_seconds"), g(d, "cpu_seconds")),
                    g(w, "peak_mib") or "-", g(d, "peak_mib") or "-", ratio(g(w, "peak_mib"), g(d, "peak_mib")),
                    g(wl, "load_peak_mib") or "-", g(dl, "load_peak_mib") or "-",
                ))
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: "  ".join(str(v).rjust(w) for v, w in zip(r, widths))  # noqa: E731
    print("\ntime: one transformer forward (batch 1) / one VAE decode, wall and CPU (user+sys, all threads) seconds;"
          "\npeak: VmHWM during the case (resident weights included); load peak: VmHWM after loading")
    print(line(hdr))
    for r in rows:
        print(line(r))

    print("\nparity (weft vs diffusers, same dtype; bf16 also vs diffusers f32)")
    hdr = ("model", "case", "dtype", "vs", "max_abs", "max_ref", "max_abs/max_ref", "rel_l2")
    prow = []
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for vs in [dtype] + (["f32"] if dtype != "f32" else []):
                for who in ("weft", "diffusers") if vs != dtype else ("weft",):
                    f = out / f"cmp_{who}_{model}_{dtype}_vs_{vs}.json"
                    if not f.exists():
                        continue
                    for case, e in sorted(json.loads(f.read_text()).items()):
                        if "error" in e:
                            prow.append((model, case, dtype, f"{who} vs diffusers {vs}", e["error"], "", "", ""))
                            continue
                        prow.append((model, case, dtype, f"{who} vs diffusers {vs}", f"{e['max_abs']:.3e}",
                                     f"{e['max_ref']:.3g}", f"{e['rel']:.2e}", f"{e['rel_l2']:.2e}"))
    if prow:
        widths = [max(len(str(r[i])) for r in prow + [hdr]) for i in range(len(hdr))]
        print(line(hdr))
        for r in prow:
            print(line(r))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--layers", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--model", choices=["transformer", "vae", "encoder"], required=True)
    r.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    r.add_argument("--cases", default="small")
    r.add_argument("--repeat", type=int, default=1)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--out")
    at = sub.add_parser("attention")
    at.add_argument("--threads", type=int, default=0)
    mm = sub.add_parser("matmul")
    mm.add_argument("--threads", type=int, default=0)
    cv = sub.add_parser("conv3d")
    cv.add_argument("--shape", default="512,512,5,40,64", help="cin,cout,frames,height,width")
    cv.add_argument("--fused", action="store_true")
    cv.add_argument("--repeat", type=int, default=3)
    cv.add_argument("--threads", type=int, default=0)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    rp = sub.add_parser("report")
    rp.add_argument("dir")
    rp.add_argument("--models", default="transformer,vae")
    rp.add_argument("--dtypes", default="f32,bf16")
    rp.add_argument("--cases", default="small,large")
    args = p.parse_args()
    {"make": make, "run": run, "matmul": matmul, "attention": attention, "conv3d": conv3d, "compare": compare, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
