#!/usr/bin/env bash
# Build Apache Beam's Prism runner (Go) from the Go module proxy, for local
# streaming runs of the yuqing pipelines with no network beyond package
# registries.
#
#   deploy/prism/build.sh            # builds if needed, prints the binary path
#   PRISM_VERSION=v2.77.0 deploy/prism/build.sh
#
# Idempotent: if the binary already exists it only prints its path.
# The version must match the Python SDK (apache-beam==2.77.0).
set -euo pipefail

PRISM_VERSION="${PRISM_VERSION:-v2.77.0}"
CACHE_ROOT="${YUQING_CACHE:-$HOME/.cache/yuqing}"
OUT_DIR="${CACHE_ROOT}/prism/${PRISM_VERSION}"
BIN="${OUT_DIR}/prism"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: the Go toolchain (go >= 1.24) is needed to build prism" >&2
  exit 1
fi

mkdir -p "$OUT_DIR"
start=$(date +%s)
echo "build.sh: building prism ${PRISM_VERSION} into ${OUT_DIR} (cold builds take minutes)" >&2
# GOBIN makes `go install pkg@version` drop the binary straight into OUT_DIR.
# Build into a temp dir first and move it, so an interrupted build never
# leaves a half-written binary that the skip check above would accept.
tmp_bin="$(mktemp -d "${OUT_DIR}/.build.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
GOBIN="$tmp_bin" GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" CGO_ENABLED=0 \
  go install "github.com/apache/beam/sdks/v2/go/cmd/prism@${PRISM_VERSION}" >&2
mv "$tmp_bin/prism" "$BIN"
# Convenience link to the newest build.
ln -sfn "${PRISM_VERSION}/prism" "${CACHE_ROOT}/prism/prism"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
