#!/usr/bin/env bash
# Streaming demo on the bundled sample: the pipeline watches a landing folder while
# the sample is replayed into it; the tables grow as it runs; the replay ends the
# stream and the run finishes by itself.
#
#   ./run_streaming.sh                    # 3 days of posts at 3600x: about 75 s of replay
#   SPEED=7200 ./run_streaming.sh         # faster
#   OUT=/tmp/out LANDING=/tmp/landing ./run_streaming.sh
#   CREDIT_REPOSTS=1 ./run_streaming.sh   # credit reposts as batch does: far slower
#
# The demo counts reposts under their own topics (--no-credit-reposts): crediting
# them with their chain root's topics takes five keyed stages per post, which Prism
# runs several times slower than the replay (docs/streaming.md, "Reposts in a stream").
#
# Setup (once): the venv from PyPI, and Prism built from the Go module proxy by
# deploy/prism/build.sh (needs Go >= 1.24). Nothing is downloaded while it runs.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh test
PRISM=$(deploy/prism/build.sh)

SAMPLE_DIR=${SAMPLE_DIR:-sample}
OUT=${OUT:-out-streaming}
LANDING=${LANDING:-landing}
SPEED=${SPEED:-3600}
EARLY=${EARLY:-5s}
if [ "${CREDIT_REPOSTS:-0}" = "1" ]; then CREDIT=--credit-reposts; else CREDIT=--no-credit-reposts; fi
if [ ! -f "$SAMPLE_DIR/posts.jsonl.gz" ]; then
  .venv/bin/python -m sampledata --out "$SAMPLE_DIR/posts.jsonl.gz"
fi
rm -rf "$LANDING"
mkdir -p "$LANDING"

echo "Streaming pipelines.volume: $LANDING -> $OUT (Prism: $PRISM; $CREDIT)"
.venv/bin/python -m pipelines.volume --streaming --landing "$LANDING" --output "$OUT" \
  --window 1h --timezone Asia/Shanghai --allowed-lateness 6h --early-results-every "$EARLY" \
  "$CREDIT" --prism_location "$PRISM" &
pipeline=$!
trap 'kill "$pipeline" 2>/dev/null || true' EXIT INT TERM

start=$(date +%s)
.venv/bin/python -m pipelines.replay --input "$SAMPLE_DIR/posts.jsonl.gz" --landing "$LANDING" \
  --speed "$SPEED" --end-stream &
replay=$!

# What a reader sees while it runs: the latest pane of each window.
watch_tables() {
  .venv/bin/python - "$OUT" <<'EOF'
import sys
from reports.panes import read_latest_panes
out = sys.argv[1]
try:
    volume, late = read_latest_panes(out, "volume"), read_latest_panes(out, "late_posts")
except Exception as error:  # the tables appear a moment after the start
    print(f"  (tables not readable yet: {type(error).__name__})")
    sys.exit(0)
last = volume["window_start"].max()
print(f"  {volume.height:4d} windows, {volume['posts'].sum():6d} posts, "
      f"{late['posts'].sum():3d} late posts, latest window {last}")
EOF
}
# Progress until the pipeline ends: it runs on after the replay while its stages
# catch up with the files already dropped.
while kill -0 "$pipeline" 2>/dev/null; do
  sleep 10
  echo "after $(( $(date +%s) - start )) s:"
  watch_tables
done
wait "$replay"
wait "$pipeline"
trap - EXIT INT TERM
echo "Finished in $(( $(date +%s) - start )) s"
echo
.venv/bin/python -m reports summary --output "$OUT"
