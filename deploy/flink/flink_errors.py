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
        where = (
            f" (in {where} on {first.get('endpoint') or first.get('location')})"
            if where
            else ""
        )
        trace = first.get("stacktrace") or first.get("exceptionName") or ""
    else:
        trace, where = body.get("root-exception") or "", ""
    return (trace if full else condense(trace)) + where


def log_errors(log_dir: str | Path, lines: int = 30) -> str:
    """The last error lines of the TaskManager, JobManager and worker pool logs."""
    out = []
    for pattern in (
        "*taskexecutor*.log",
        "*standalonesession*.log",
        "beam-worker-pool.log",
    ):
        for path in sorted(Path(log_dir).glob(pattern)):
            text = path.read_text(errors="replace").splitlines()
            errors = [
                line
                for line in text
                if " ERROR " in line
                or line.startswith(("Caused by", "Traceback", "ERROR:"))
            ]
            if errors:
                out.append(f"----- {path} (last error lines)")
                out.extend(errors[-lines:])
    return "\n".join(out)


def describe_failures(rest: str, since_ms: int = 0, log_dir: str | None = None) -> str:
    """What Flink knows of jobs submitted since ``since_ms`` that went wrong."""
    try:
        jobs = jobs_since(rest, since_ms)
    except OSError as err:
        return f"Flink REST {rest} did not answer: {err}"
    if not jobs:
        return (
            "Flink received no job: the failure is on the submitting side "
            "(pipeline construction or Beam's job server; see the Python "
            "output above)."
        )
    parts = []
    for job in jobs:
        error = root_exception(rest, job["jid"])
        if job["state"] in FAILED_STATES or error:
            parts.append(
                f"Flink job {job['jid']} ({job['name']}) {job['state']}:\n"
                f"{error or '(no exception recorded)'}"
            )
    if not parts:
        states = ", ".join(f"{j['jid']} {j['state']}" for j in jobs)
        parts.append(
            f"Flink jobs since submission: {states}; none recorded an exception."
        )
    if log_dir:
        parts.append(log_errors(log_dir))
    return "\n\n".join(p for p in parts if p)


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
