#!/usr/bin/env bash
# Submit the volume pipeline to the local Flink cluster (deploy/flink/cluster.sh)
# through Beam's Flink job server, with deploy/portable.py: the same submission the
# portable-path test makes to Prism (tests/test_portable.py) and the Kubernetes
# manifests make in the cluster.
#
#   deploy/flink/run.sh --input 'sample/*.jsonl.gz' --output out [pipeline options]
#   deploy/flink/run.sh --job-endpoint HOST:PORT ...  # a job service already running
#                                                     # (a remote job server, Prism)
#   deploy/flink/run.sh --loopback ...   # SDK workers inside the submitting process
#                                        # instead of the worker pool: quick tries
#   deploy/flink/run.sh --smoke --input README.md --output /tmp/smoke/counts
#
# Without --job-endpoint it starts the job server from the cached jar
#   java -jar beam-runners-flink-<minor>-job-server-<beam>.jar
#     --flink-master localhost:8081 --job-port <free> --artifacts-dir <cache>/artifacts
# for this submission only, then runs
#   python deploy/portable.py --job-endpoint localhost:<port>
#     --worker-pool localhost:50000 -- --parallelism 2 --sdk_worker_parallelism 2 "$@"
# i.e. python -m pipelines.volume --runner=PortableRunner --environment_type=EXTERNAL
# --setup_file=<project>/setup.py ... (see deploy/portable.py).
# Relative paths are taken from the project root, the worker pool's cwd.
# Options given after ours win (argparse keeps the last), e.g. --parallelism 1.
# On failure it prints Flink's own exception for the job (REST /jobs/<id>/exceptions).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pool="localhost:$WORKER_POOL_PORT"
entry=()
extra=()
endpoint=""
while (($#)); do
  case "$1" in
    --loopback) extra+=(--environment_type=LOOPBACK); shift ;;
    --smoke) entry=(--entry "$FLINK_DEPLOY_DIR/smoke_pipeline.py"); shift ;;
    --job-endpoint) endpoint="$2"; shift 2 ;;
    --job-endpoint=*) endpoint="${1#*=}"; shift ;;
    *) break ;;
  esac
done

job_server_pid=""
stop_job_server() {
  if [[ -n "$job_server_pid" ]] && kill -0 "$job_server_pid" 2>/dev/null; then
    kill "$job_server_pid" 2>/dev/null || true
    wait "$job_server_pid" 2>/dev/null || true
  fi
}
trap stop_job_server EXIT

if [[ -z "$endpoint" ]]; then
  jar="$(job_server_jar)"
  [[ -s "$jar" ]] || {
    log "error: no Beam Flink job server jar at $jar"
    log "  run deploy/flink/setup.sh (or set BEAM_FLINK_JOB_SERVER_JAR for it)"
    exit 3
  }
  curl -fsS --max-time 3 "$FLINK_REST/overview" >/dev/null 2>&1 ||
    die "Flink REST does not answer on $FLINK_REST: run deploy/flink/cluster.sh start"
  if [[ " ${extra[*]} " != *LOOPBACK* ]] &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$WORKER_POOL_PORT") 2>/dev/null; then
    die "no Beam worker pool on $pool: run deploy/flink/cluster.sh start"
  fi
  port="$("$PYTHON" -c 'import socket; s = socket.socket()
s.bind(("localhost", 0)); print(s.getsockname()[1])')"
  mkdir -p "$FLINK_CACHE/artifacts" "$FLINK_LOG_DIR"
  server_log="$FLINK_LOG_DIR/beam-job-server.log"
  java -jar "$jar" --flink-master "localhost:$FLINK_REST_PORT" \
    --job-port "$port" --artifact-port 0 --expansion-port 0 \
    --artifacts-dir "$FLINK_CACHE/artifacts" >"$server_log" 2>&1 &
  job_server_pid=$!
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$job_server_pid" 2>/dev/null || {
      tail -20 "$server_log" >&2
      die "the job server exited (log: $server_log)"
    }
    sleep 0.5
  done
  endpoint="localhost:$port"
  log "Beam Flink job server on $endpoint (log: $server_log)"
fi

cd "$PROJECT_ROOT"
started_ms=$(($(date +%s) * 1000))
set +e
"$PYTHON" "$PROJECT_ROOT/deploy/portable.py" --job-endpoint "$endpoint" \
  --worker-pool "$pool" "${entry[@]}" -- \
  --parallelism "$FLINK_TASK_SLOTS" \
  --sdk_worker_parallelism "$FLINK_TASK_SLOTS" \
  "${extra[@]}" \
  "$@"
status=$?
set -e
if ((status != 0)) && [[ -n "$job_server_pid" ]]; then
  # The Python side often reports only "failed in state FAILED"; Flink keeps the
  # job's root exception. Print it for jobs that failed since we submitted.
  echo "----- Flink's account (deploy/flink/flink_errors.py):" >&2
  "$PYTHON" "$FLINK_DEPLOY_DIR/flink_errors.py" --rest "$FLINK_REST" \
    --since-ms "$started_ms" --log-dir "$FLINK_LOG_DIR" >&2 || true
fi
exit "$status"
