#!/usr/bin/env python3
"""Run a weft shard plan on a Ray cluster and join the result.

    weft plan film.mkv --shards 64 -o film.plan.json --codec ffv1
    python3 contrib/ray/weft_ray.py film.plan.json -o film-filled.mkv -- --model models/m

Each shard of the plan (`weft plan`) becomes one Ray task that runs
`weft JOB --plan PLAN --shard K` (JOB: the plan's command, infill, extend or
animate; plus the weft options after `--`) and writes that shard's segment; when every shard is done the driver runs
`weft join`. Ray does the scheduling, the per-task resources and the retries;
weft makes a retried shard rewrite the same segment. Without --address (or
RAY_ADDRESS) a local Ray instance is started for the run and stopped after
it. The plan file, the inputs, the segments folder and the weft binary must
be at the same paths on every node (a shared filesystem).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", help="a plan written by `weft plan`")
    p.add_argument("-o", "--output", required=True, help="joined output (a folder for a plan of several inputs)")
    p.add_argument("--weft", default=None, help="the weft binary (default: `weft` on PATH)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a local one)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs each shard task reserves (default 1)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs each shard task reserves (default 0)")
    p.add_argument("--retries", type=int, default=2, help="times a failed or lost shard is run again (default 2)")
    p.add_argument("--local-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace the joined output if it exists")
    p.add_argument("--stats", default=None, help="write per-shard timings (JSON) to this file")
    p.add_argument("--kill-mid-write", type=int, default=None, metavar="K",
                   help="testing: kill shard K's worker once while its segment is being written (the retry must redo it)")
    p.epilog = "Options after `--` go to the plan's command, `weft infill`, `extend` or `animate` (--model, --seed, --device, ...)."
    ours, weft_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    a = p.parse_args(ours)
    a.weft_args = weft_args
    if a.retries < 0:
        p.error("--retries must be at least 0")
    return a


def die(msg):
    print(f"weft_ray: {msg}", file=sys.stderr)
    sys.exit(1)


def find_weft(path):
    w = path or shutil.which("weft")
    if not w or not os.path.isfile(w) or not os.access(w, os.X_OK):
        die(f"no weft binary at {path!r}" if path else "no `weft` on PATH (pass --weft)")
    return os.path.abspath(w)


# The command that runs a shard, by the plan's job kind (plans of version 1
# have no job: they fill gaps).
COMMANDS = {"gaps": "infill", "range": "infill", "dups": "infill", "fps": "infill", "extend": "extend", "animate": "animate"}


def plan_command(plan):
    kind = (plan.get("job") or {}).get("kind", "gaps")
    if kind not in COMMANDS:
        die(f"the plan's job {kind!r} is not one this driver knows (a newer weft made the plan?)")
    return COMMANDS[kind]


def run_one(weft, command, plan, k, segment, weft_args, kill_marker):
    """Runs one shard; returns (k, seconds). Raises on failure (Ray retries)."""
    cmd = [weft, command, "--plan", plan, "--shard", str(k), "--quiet", *weft_args]
    t = time.monotonic()
    if kill_marker is not None and not os.path.exists(kill_marker):
        # Testing hook: once, kill weft and this worker as a lost machine
        # would be: when the segment's temporary file has grown, or after
        # 0.2 s of work if it has not appeared by then (a loaded machine can
        # starve this poller past a short write).
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        folder, name = os.path.split(segment)
        prefix = f".{name}.weft-"
        while proc.poll() is None:
            parts = [f for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(".part")] if os.path.isdir(folder) else []
            writing = parts and os.path.getsize(os.path.join(folder, parts[0])) > 0
            if writing or time.monotonic() - t > 0.2:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                when = f"mid-write ({parts[0]})" if writing else "mid-shard (before its segment was written)"
                with open(kill_marker, "w") as f:
                    f.write(f"killed shard {k} {when}\n")
                os._exit(1)
            time.sleep(0.005)
        with open(kill_marker, "w") as f:
            f.write(f"missed: shard {k} finished before its segment could be killed\n")
        if proc.returncode != 0:
            raise RuntimeError(f"shard {k}: {proc.stderr.read().decode(errors='replace').strip()}")
        return k, time.monotonic() - t
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"shard {k}: {r.stderr.decode(errors='replace').strip() or f'exit status {r.returncode}'}")
    return k, time.monotonic() - t


def main(argv):
    a = parse_args(argv)
    weft = find_weft(a.weft)
    plan_path = os.path.abspath(a.plan)
    try:
        with open(plan_path) as f:
            plan = json.load(f)
        shards = plan["shards"]
    except (OSError, ValueError, KeyError) as e:
        die(f"{a.plan}: not a weft shard plan: {e}")
    command = plan_command(plan)
    out = os.path.abspath(a.output)
    if os.path.exists(out) and not a.overwrite and len(plan["inputs"]) == 1:
        die(f"{a.output}: already exists (use --overwrite to replace it)")
    plan_dir = os.path.dirname(plan_path)
    kill_marker = None
    if a.kill_mid_write is not None:
        if not 0 <= a.kill_mid_write < len(shards):
            die(f"--kill-mid-write {a.kill_mid_write}: the plan has shards 0..{len(shards) - 1}")
        kill_marker = plan_path + f".killed-{a.kill_mid_write}"

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        die("the Ray Python package is missing (pip install ray==2.52.1; scripts/setup makes .venv-ray)")

    address = a.address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.monotonic()
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=a.local_cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
                 object_store_memory=100 * 1024 * 1024, logging_level="ERROR", log_to_driver=False)
    started = time.monotonic() - t0
    task = ray.remote(run_one).options(num_cpus=a.num_cpus, num_gpus=a.num_gpus,
                                       max_retries=a.retries, retry_exceptions=True)
    t1 = time.monotonic()
    pending = {}
    for s in shards:
        k = s["index"]
        seg = os.path.join(plan_dir, s["segment"])
        marker = kill_marker if k == a.kill_mid_write else None
        pending[task.remote(weft, command, plan_path, k, seg, a.weft_args, marker)] = k
    print(f"weft_ray: {len(shards)} `weft {command}` shard(s) on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs), "
          f"{a.num_cpus:g} CPU / {a.num_gpus:g} GPU each, {a.retries} retries", file=sys.stderr)
    times = {}
    failed = None
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            k = pending.pop(ref)
            try:
                _, secs = ray.get(ref)
            except Exception as e:  # the last retry failed too
                failed = failed or f"shard {k} failed after {a.retries} retries: {str(e).strip().splitlines()[-1]}"
                continue
            times[k] = secs
            done = len(times)
            elapsed = time.monotonic() - t1
            eta = elapsed / done * (len(shards) - done)
            print(f"weft_ray: shard {k} done in {secs:.1f} s ({done}/{len(shards)}, ETA {eta:.0f} s)", file=sys.stderr)
    run_secs = time.monotonic() - t1
    ray.shutdown()
    if failed:
        die(failed)
    join = [weft, "join", plan_path, "-o", out, "--quiet"] + (["--overwrite"] if a.overwrite else [])
    t2 = time.monotonic()
    r = subprocess.run(join, stderr=subprocess.PIPE)
    if r.returncode != 0:
        die(f"join failed: {r.stderr.decode(errors='replace').strip()}")
    join_secs = time.monotonic() - t2
    print(f"weft_ray: wrote {a.output} ({len(shards)} shard(s) in {run_secs:.1f} s, joined in {join_secs:.1f} s)", file=sys.stderr)
    if a.stats:
        with open(a.stats, "w") as f:
            json.dump({"ray_start_s": started, "shards_s": run_secs, "join_s": join_secs,
                       "shard_s": [times[k] for k in sorted(times)]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
