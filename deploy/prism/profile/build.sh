#!/usr/bin/env bash
# Build Prism with Go's profiler, for finding where a streaming run's time and
# memory go inside the runner (deploy/prism/README.md, "Profiling Prism").
#
#   deploy/prism/profile/build.sh     # prints the binary's path
#   YUQING_PRISM=<that path> PRISM_PPROF=127.0.0.1:6061 <a streaming run>
#   go tool pprof -top http://127.0.0.1:6061/debug/pprof/profile?seconds=30
#
# Same module version as deploy/prism/build.sh, from the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${YUQING_CACHE:-$HOME/.cache/yuqing}/prism/v2.77.0-pprof"
mkdir -p "$out"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp "$here/main.go" "$here/go.mod" "$build/"
(cd "$build" && GOFLAGS=-mod=mod go mod tidy >&2 && CGO_ENABLED=0 go build -o "$out/prism" .)
echo "$out/prism"
