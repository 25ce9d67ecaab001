#!/usr/bin/env bash
# Set up, generate the bundled sample, run the pipeline on it, print the summary.
#
#   ./run_local.sh                 # batch, DirectRunner, 2 worker processes
#   OUT=/tmp/out ./run_local.sh    # elsewhere
#   ./run_local.sh --streaming     # streaming on Prism: run_streaming.sh
#
# Everything it needs comes from PyPI; the sample is generated, no server is needed.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--streaming" ]; then
  shift
  exec ./run_streaming.sh "$@"
fi
scripts/bootstrap.sh test

SAMPLE_DIR=${SAMPLE_DIR:-sample}
OUT=${OUT:-out}
if [ ! -f "$SAMPLE_DIR/posts.jsonl.gz" ]; then
  .venv/bin/python -m sampledata --out "$SAMPLE_DIR/posts.jsonl.gz"
fi

echo "Running pipelines.volume on $SAMPLE_DIR/posts.jsonl.gz (DirectRunner, 2 workers)"
start=$(date +%s)
.venv/bin/python -m pipelines.volume \
  --input "$SAMPLE_DIR/*.jsonl.gz" --output "$OUT" \
  --window 1h --timezone Asia/Shanghai \
  --direct_num_workers 2 --direct_running_mode multi_processing
echo "Finished in $(( $(date +%s) - start )) s"
echo
.venv/bin/python -m reports summary --output "$OUT"
