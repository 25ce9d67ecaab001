# shellcheck shell=bash disable=SC2034  # variables are for the sourcing scripts
# Shared paths and defaults for deploy/flink/*.sh; sourced, never run.
# Every value can be overridden from the environment.

FLINK_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="${PROJECT_ROOT:-$(cd "$FLINK_DEPLOY_DIR/../.." && pwd)}"
VENV="${VENV:-$PROJECT_ROOT/.venv}"
PYTHON="${PYTHON:-$VENV/bin/python}"

YUQING_CACHE="${YUQING_CACHE:-$HOME/.cache/yuqing}"
FLINK_CACHE="${FLINK_CACHE:-$YUQING_CACHE/flink}"

# Beam publishes a Flink job server per Flink minor (Beam 2.77.0: 1.19, 1.20,
# 2.0, 2.1, 2.2). 2.2.1 is the newest Flink on PyPI in a line Beam 2.77 serves.
FLINK_VERSION="${FLINK_VERSION:-2.2.1}"
FLINK_MINOR="${FLINK_VERSION%.*}"

FLINK_HOME="${FLINK_HOME:-$FLINK_CACHE/flink-$FLINK_VERSION}"
FLINK_CONF_DIR="${FLINK_CONF_DIR:-$FLINK_CACHE/conf}"
FLINK_LOG_DIR="${FLINK_LOG_DIR:-$FLINK_CACHE/log}"
FLINK_RUN_DIR="$FLINK_CACHE/run"
FLINK_JAR_DIR="$FLINK_CACHE/jars"

FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
FLINK_REST="http://localhost:$FLINK_REST_PORT"
FLINK_TASK_SLOTS="${FLINK_TASK_SLOTS:-2}"
WORKER_POOL_PORT="${WORKER_POOL_PORT:-50000}"

# Names pid and log files (flink-$FLINK_IDENT_STRING-taskexecutor.pid); Flink's
# default, $USER, is unset in some shells (CI, cron).
FLINK_IDENT_STRING="${FLINK_IDENT_STRING:-yuqing}"
export FLINK_HOME FLINK_CONF_DIR FLINK_LOG_DIR FLINK_IDENT_STRING
# flink-daemon.sh picks the JVM from JAVA_HOME, else from PATH.
if [[ -z "${JAVA_HOME:-}" ]] && command -v java >/dev/null; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  export JAVA_HOME
fi

beam_version() {
  "$PYTHON" -c 'import importlib.metadata as m; print(m.version("apache-beam"))'
}

job_server_jar() {
  local beam="${BEAM_VERSION:-$(beam_version)}"
  echo "$FLINK_JAR_DIR/beam-runners-flink-$FLINK_MINOR-job-server-$beam.jar"
}

log() { echo "[$(basename "$0")] $*" >&2; }
die() { log "error: $*"; exit 1; }
