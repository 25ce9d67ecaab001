"""Flink's own account of why jobs failed: REST job exceptions, then the log tail.

    python deploy/flink/flink_errors.py --rest http://localhost:8081 --since-ms 0 \\
        --log-dir ~/.cache/yuqing/flink/log

Used by run.sh after a failed submission and by tests/test_flink.py, so a failing
job reports Flink's exception rather than a Python-side "failed in state FAILED".
"""

import argparse
import json
import sys
import urllib.request
from pathlib import Path

FAILED_STATES = ("FAILED", "FAILING", "CANCELED", "CANCELLING", "RESTARTING")


def get_json(rest: str, path: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(f"{rest.rstrip('/')}{path}", timeout=timeout) as resp:
        return json.load(resp)


def jobs_since(rest: str, since_ms: int = 0) -> list[dict]:
    """Jobs started at or after ``since_ms`` (epoch ms), newest first."""
    jobs = get_json(rest, "/jobs/overview")["jobs"]
    jobs = [j for j in jobs if j.get("start-time", 0) >= since_ms]
    return sorted(jobs, key=lambda j: j.get("start-time", 0), reverse=True)


def condense(trace: str, frames: int = 2) -> str:
    """A Java stack trace cut to its first line and each cause with a few frames."""
    lines = trace.splitlines()
    keep, budget = [], 0
    for line in lines:
        if not keep or line.startswith("Caused by"):
            keep.append(line)
            budget = frames
        elif budget and line.lstrip().startswith("at "):
            keep.append(line)
            budget -= 1
    return "\n".join(keep)


def root_exception(rest: str, jid: str, full: bool = False) -> str:
    """The job's root exception ('' when Flink has none), condensed to its causes.

    Flink 2.x answers only ``exceptionHistory``; 1.x also ``root-exception``.
    """
    body = get_json(rest, f"/jobs/{jid}/exceptions?maxExceptions=5")
    entries = (body.get("exceptionHistory") or {}).get("entries") or []
    if entries:
        first = entries[0]
        where = first.get("taskName") or ""
        where = f" (in {where} on {first.get('endpoint') or first.get('location')})" \
            if where else ""
        trace = first.get("stacktrace") or first.get("exceptionName") or ""
    else:
        trace, where = body.get("root-exception") or "", ""
    return (trace if full else condense(trace)) + where


def log_tail(log_dir: str | Path, lines: int = 40) -> str:
    """Last lines of the TaskManager and JobManager logs, error lines first."""
    out = []
    for pattern in ("*taskexecutor*.log", "*standalonesession*.log",
                    "beam-worker-pool.log"):
        for path in sorted(Path(log_dir).glob(pattern)):
            text = path.read_text(errors="replace").splitlines()
            errors = [line for line in text if " ERROR " in line
                      or line.startswith(("Caused by", "Traceback"))]
            out.append(f"----- {path} (last error lines)")
            out.extend(errors[-lines // 2:])
            out.append(f"----- {path} (tail)")
            out.extend(text[-lines // 2:])
    return "\n".join(out)


def describe_failures(rest: str, since_ms: int = 0, log_dir: str | None = None
                      ) -> str:
    """A report of every job since ``since_ms`` that did not finish cleanly."""
    parts = []
    try:
        for job in jobs_since(rest, since_ms):
            if job["state"] in FAILED_STATES:
                parts.append(f"Flink job {job['jid']} ({job['name']}) "
                             f"{job['state']}:\n{root_exception(rest, job['jid'])}")
    except OSError as err:
        parts.append(f"Flink REST {rest} did not answer: {err}")
    if log_dir and not any(p.startswith("Flink job") for p in parts):
        parts.append(log_tail(log_dir))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest", default="http://localhost:8081")
    parser.add_argument("--since-ms", type=int, default=0)
    parser.add_argument("--log-dir")
    args = parser.parse_args(argv)
    report = describe_failures(args.rest, args.since_ms, args.log_dir)
    if report:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
