#!/usr/bin/env bash
# Build SeaweedFS (Go, Apache-2.0) from the Go module proxy: a small S3 API
# server the storage tests run on loopback to prove object-store publishing.
#
#   deploy/seaweedfs/build.sh               # builds if needed, prints the binary path
#   deploy/seaweedfs/build.sh --where       # prints the binary path, builds nothing
#   deploy/seaweedfs/build.sh --background  # starts a build in the background when
#                                           # the binary is missing and Go is here
#   SEAWEEDFS_VERSION=v0.0.0-... deploy/seaweedfs/build.sh
#
# SeaweedFS tags its releases without a leading "v" (e.g. "4.01"), which the Go
# module proxy does not accept as versions, so a release is pinned by its
# pseudo-version (commit time and hash). Idempotent: if the binary already
# exists it only prints its path. Builds hold a lock (flock) beside the binary,
# so a second build waits for the first and then finds its binary. A background
# build logs to build.log beside the binary (the storage tests show its tail).
set -euo pipefail

SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE_ROOT="${YUQING_CACHE:-$HOME/.cache/yuqing}"
OUT_DIR="${CACHE_ROOT}/seaweedfs/${SEAWEEDFS_VERSION}"
BIN="${OUT_DIR}/weed"
LOG="${OUT_DIR}/build.log"

case "${1:-}" in
  --where)
    echo "$BIN"
    exit 0
    ;;
  --background)
    if [[ -x "$BIN" ]] || ! command -v go >/dev/null 2>&1; then
      exit 0
    fi
    mkdir -p "$OUT_DIR"
    # The lock is taken here and handed to the build (its descriptor 9 is
    # inherited), so two starts never run two builds or share one log.
    if command -v flock >/dev/null 2>&1; then
      exec 9>"${OUT_DIR}/.build.lock"
      if ! flock --nonblock 9; then
        echo "build.sh: a build of seaweedfs is already running (log: $LOG)" >&2
        exit 0
      fi
    fi
    # setsid: the build outlives a test run that is interrupted, and its binary
    # serves the next one.
    SEAWEEDFS_BUILD_LOCKED=1 setsid nohup "$0" >"$LOG" 2>&1 </dev/null &
    echo "build.sh: building seaweedfs in the background (log: $LOG)" >&2
    exit 0
    ;;
  "") ;;
  *)
    echo "build.sh: unknown argument $1 (--where, --background or none)" >&2
    exit 2
    ;;
esac

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: the Go toolchain is needed to build seaweedfs" >&2
  exit 1
fi

mkdir -p "$OUT_DIR"
if [[ -z "${SEAWEEDFS_BUILD_LOCKED:-}" ]] && command -v flock >/dev/null 2>&1; then
  exec 9>"${OUT_DIR}/.build.lock"
  if ! flock --nonblock 9; then
    echo "build.sh: another build of seaweedfs is running; waiting for it" >&2
    flock 9
  fi
  if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
  fi
fi
start=$(date +%s)
echo "build.sh: building seaweedfs ${SEAWEEDFS_VERSION} into ${OUT_DIR}" \
  "(cold builds take many minutes)" >&2
# ``go install module@version`` refuses modules whose go.mod has replace
# directives (seaweedfs has one), so the module's source is fetched from the
# proxy and built as the main module in a temporary copy. The binary is built
# there first and moved, so an interrupted build never leaves a half-written
# binary that the skip check above would accept.
tmp_bin="$(mktemp -d "${OUT_DIR}/.build.XXXXXX")"
trap 'chmod -R u+w "$tmp_bin" 2>/dev/null; rm -rf "$tmp_bin"' EXIT
module="github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}"
source_dir="$(go mod download -json "$module" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$source_dir" ]]; then
  echo "build.sh: could not download $module from the Go module proxy" >&2
  exit 1
fi
cp -r "$source_dir" "$tmp_bin/src"
chmod -R u+w "$tmp_bin/src"
# Only the weed command; -trimpath and no symbol tables (-s -w): a smaller binary
# and a shorter link.
(cd "$tmp_bin/src" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" CGO_ENABLED=0 \
  go build -trimpath -ldflags='-s -w' -o "$tmp_bin/weed" ./weed) >&2
mv "$tmp_bin/weed" "$BIN"
ln -sfn "${SEAWEEDFS_VERSION}/weed" "${CACHE_ROOT}/seaweedfs/weed"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
