#!/usr/bin/env bash
# Submit the volume pipeline to the local Flink cluster (deploy/flink/cluster.sh).
#
#   deploy/flink/run.sh --input 'sample/*.jsonl.gz' --output out [pipeline options]
#   deploy/flink/run.sh --loopback ...   # SDK workers inside this process instead
#                                        # of the worker pool: quick local tries
#   deploy/flink/run.sh --smoke --input README.md --output /tmp/smoke/counts
#   deploy/flink/run.sh --uber-jar ...   # ship pipeline + artifacts inside the jar
#                                        # (remote clusters without shared /tmp)
#
# Runs `python -m pipelines.volume "$@"` from the project root with
#   --runner FlinkRunner --flink_master localhost:8081 --flink_version <minor>
#   --flink_job_server_jar <cached jar> --environment_type EXTERNAL
#   --environment_config localhost:50000 --parallelism 2 --setup_file ./setup.py
#   --sdk_worker_parallelism 2 (one Python process per slot: the GIL)
# Relative paths are taken from the project root, the worker pool's cwd.
# Options given after ours win (argparse keeps the last), e.g. --parallelism 1.
# On failure it prints Flink's own exception for the job (REST /jobs/<id>/exceptions).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

environment=(--environment_type EXTERNAL --environment_config "localhost:$WORKER_POOL_PORT")
entry=(-m pipelines.volume)
extra=()
while (($#)); do
  case "$1" in
    --loopback) environment=(--environment_type LOOPBACK); shift ;;
    --smoke) entry=("$FLINK_DEPLOY_DIR/smoke_pipeline.py"); shift ;;
    --uber-jar) extra+=(--flink_submit_uber_jar); shift ;;
    *) break ;;
  esac
done

jar="$(job_server_jar)"
[[ -s "$jar" ]] || {
  log "error: no Beam Flink job server jar at $jar"
  log "  run deploy/flink/setup.sh (or set BEAM_FLINK_JOB_SERVER_JAR for it)"
  exit 3
}
curl -fsS --max-time 3 "$FLINK_REST/overview" >/dev/null 2>&1 ||
  die "Flink REST does not answer on $FLINK_REST: run deploy/flink/cluster.sh start"
if [[ "${environment[1]}" == EXTERNAL ]] &&
    ! (exec 3<>"/dev/tcp/127.0.0.1/$WORKER_POOL_PORT") 2>/dev/null; then
  die "no Beam worker pool on localhost:$WORKER_POOL_PORT: run deploy/flink/cluster.sh start"
fi
if [[ -f "$PROJECT_ROOT/setup.py" ]]; then
  # Staged as an sdist; a boot-enabled SDK container installs it on the workers.
  # The local worker pool imports the project from its cwd/PYTHONPATH instead.
  extra+=(--setup_file ./setup.py)
else
  log "warning: no setup.py at the project root; submitting without --setup_file"
fi

cd "$PROJECT_ROOT"
started_ms=$(($(date +%s) * 1000))
set +e
PYTHONPATH="$PROJECT_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "${entry[@]}" \
  --runner FlinkRunner \
  --flink_master "localhost:$FLINK_REST_PORT" \
  --flink_version "$FLINK_MINOR" \
  --flink_job_server_jar "$jar" \
  "${environment[@]}" \
  --parallelism "$FLINK_TASK_SLOTS" \
  --sdk_worker_parallelism "$FLINK_TASK_SLOTS" \
  "${extra[@]}" \
  "$@"
status=$?
set -e
if ((status != 0)); then
  # The Python side often reports only "failed in state FAILED"; Flink keeps the
  # job's root exception. Print it for jobs that failed since we submitted.
  echo "----- Flink's account (deploy/flink/flink_errors.py):" >&2
  "$PYTHON" "$FLINK_DEPLOY_DIR/flink_errors.py" --rest "$FLINK_REST" \
    --since-ms "$started_ms" --log-dir "$FLINK_LOG_DIR" >&2 || true
fi
exit "$status"
