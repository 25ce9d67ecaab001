#!/usr/bin/env bash
# Local Flink session cluster for Beam Python, all on loopback:
#   JobManager (REST localhost:8081), one TaskManager with 2 slots, and a Beam
#   Python SDK worker pool (localhost:50000) beside the TaskManager, the way a
#   Kubernetes TaskManager pod runs it as a sidecar.
#
#   deploy/flink/cluster.sh start    # returns once REST answers with 2 free slots
#   deploy/flink/cluster.sh status   # what runs, slots, jobs
#   deploy/flink/cluster.sh stop     # safe to repeat
#
# Logs and pid files: $FLINK_CACHE/log, $FLINK_CACHE/run (see setup.sh).
# The worker pool runs from the project venv with cwd and PYTHONPATH at the
# project root, so SDK workers import pipelines/, transforms/, schemas/ directly.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

START_TIMEOUT="${START_TIMEOUT:-90}"
POOL_PID="$FLINK_RUN_DIR/beam-worker-pool.pid"
POOL_LOG="$FLINK_LOG_DIR/beam-worker-pool.log"

rest() { curl -fsS --max-time 3 "$FLINK_REST$1" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

pids_of() {  # pid file of a Flink daemon: jobmanager -> standalonesession
  local f="$FLINK_RUN_DIR/flink-$FLINK_IDENT_STRING-$1.pid"
  if [[ -f "$f" ]]; then cat "$f"; fi
}

pool_pid() { if [[ -f "$POOL_PID" ]]; then cat "$POOL_PID"; fi; }

total_slots() {
  rest /overview | "$PYTHON" -c 'import json,sys; o=json.load(sys.stdin); print(o["slots-total"])' 2>/dev/null || echo 0
}

tail_logs() {
  local f
  for f in "$FLINK_LOG_DIR"/flink-*-standalonesession-*.log \
           "$FLINK_LOG_DIR"/flink-*-taskexecutor-*.log \
           "$FLINK_LOG_DIR"/flink-*.out "$POOL_LOG"; do
    [[ -s "$f" ]] || continue
    echo "----- tail $f" >&2
    tail -n 25 "$f" >&2
  done
}

start() {
  [[ -f "$FLINK_HOME/.complete" && -d "$FLINK_CONF_DIR" ]] ||
    die "Flink $FLINK_VERSION is not set up: run deploy/flink/setup.sh first"
  mkdir -p "$FLINK_LOG_DIR" "$FLINK_RUN_DIR" "$FLINK_CACHE/tmp"

  local jm tm pool
  jm="$(pids_of standalonesession | tail -n 1)"
  tm="$(pids_of taskexecutor | tail -n 1)"
  pool="$(pool_pid)"
  if alive "$jm" && alive "$tm" && alive "$pool"; then
    log "already running (JobManager $jm, TaskManager $tm, worker pool $pool)"
  else
    if alive "$jm" || alive "$tm" || alive "$pool"; then
      log "a partial cluster is running; restarting it"
      stop
    fi
    if port_open "$FLINK_REST_PORT" || port_open "$WORKER_POOL_PORT"; then
      die "something else already answers on localhost:$FLINK_REST_PORT or :$WORKER_POOL_PORT"
    fi
    # Keep earlier logs apart: flink-daemon.sh appends, the pool log is replaced.
    rm -f "$FLINK_LOG_DIR"/flink-*.log "$FLINK_LOG_DIR"/flink-*.out
    "$FLINK_HOME/bin/jobmanager.sh" start >&2
    "$FLINK_HOME/bin/taskmanager.sh" start >&2
    (
      cd "$PROJECT_ROOT"
      PATH="$VENV/bin:$PATH" PYTHONPATH="$PROJECT_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
        exec setsid "$PYTHON" "$FLINK_DEPLOY_DIR/worker_pool.py" \
        --bind "localhost:$WORKER_POOL_PORT" >"$POOL_LOG" 2>&1 </dev/null
    ) &
    echo $! >"$POOL_PID"
  fi

  local deadline=$((SECONDS + START_TIMEOUT)) slots=0
  while ((SECONDS < deadline)); do
    slots="$(total_slots)"
    if ((slots >= FLINK_TASK_SLOTS)) && port_open "$WORKER_POOL_PORT"; then
      log "up in ${SECONDS}s: REST $FLINK_REST, $slots task slots, worker pool localhost:$WORKER_POOL_PORT"
      log "logs: $FLINK_LOG_DIR"
      return 0
    fi
    alive "$(pids_of standalonesession | tail -n 1)" || break
    alive "$(pids_of taskexecutor | tail -n 1)" || break
    alive "$(pool_pid)" || break
    sleep 1
  done
  log "error: cluster not ready after ${SECONDS}s (task slots: $slots)"
  tail_logs
  stop
  return 1
}

stop() {
  local daemon pid
  # Only call Flink's scripts when they have something to stop: each one starts a
  # JVM just to read the configuration.
  [[ -s "$FLINK_RUN_DIR/flink-$FLINK_IDENT_STRING-taskexecutor.pid" ]] &&
    { "$FLINK_HOME/bin/taskmanager.sh" stop-all >&2 2>/dev/null || true; }
  [[ -s "$FLINK_RUN_DIR/flink-$FLINK_IDENT_STRING-standalonesession.pid" ]] &&
    { "$FLINK_HOME/bin/jobmanager.sh" stop-all >&2 2>/dev/null || true; }
  # flink-daemon.sh kill -9s after 10 s; make sure nothing it listed survives.
  for daemon in taskexecutor standalonesession; do
    for pid in $(pids_of "$daemon"); do alive "$pid" && kill -9 "$pid"; done
    rm -f "$FLINK_RUN_DIR/flink-$FLINK_IDENT_STRING-$daemon.pid"
  done
  pid="$(pool_pid)"
  if alive "$pid"; then
    log "stopping Beam worker pool (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 20); do alive "$pid" || break; sleep 0.5; done
    if alive "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  fi
  rm -f "$POOL_PID"
  log "stopped"
}

status() {
  local jm tm pool rc=0
  jm="$(pids_of standalonesession | tail -n 1)"
  tm="$(pids_of taskexecutor | tail -n 1)"
  pool="$(pool_pid)"
  if alive "$jm"; then echo "JobManager   running (pid $jm), REST $FLINK_REST"
  else echo "JobManager   not running"; rc=3; fi
  if alive "$tm"; then echo "TaskManager  running (pid $tm)"
  else echo "TaskManager  not running"; rc=3; fi
  if alive "$pool"; then echo "worker pool  running (pid $pool), localhost:$WORKER_POOL_PORT"
  else echo "worker pool  not running"; rc=3; fi
  local overview
  if overview="$(rest /overview)"; then
    "$PYTHON" - "$overview" "$(rest /jobs/overview || echo '{"jobs": []}')" <<'PY'
import json, sys
print("Flink %(flink-version)s: %(taskmanagers)s TaskManager(s), %(slots-available)s/"
      "%(slots-total)s slots free; jobs running %(jobs-running)s, finished "
      "%(jobs-finished)s, failed %(jobs-failed)s, cancelled %(jobs-cancelled)s"
      % json.loads(sys.argv[1]))
for job in json.loads(sys.argv[2])["jobs"]:
    print("  job %(jid)s %(state)-9s %(name)s" % job)
PY
  else
    echo "REST         not answering on $FLINK_REST"
    rc=3
  fi
  echo "logs         $FLINK_LOG_DIR"
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 64 ;;
esac
