#!/usr/bin/env python
"""Probe which streaming features work on the locally built Prism (and, for
comparison, on the Python-only bundle-based DirectRunner).

    .venv/bin/python deploy/prism/probe_capabilities.py              # all probes
    .venv/bin/python deploy/prism/probe_capabilities.py late_data    # some probes
    .venv/bin/python deploy/prism/probe_capabilities.py --list

Each probe runs in its own child process with a time limit and prints one line
``PROBE RUNNER: ok|BROKEN|error  evidence...``; the whole set is also printed as
one JSON object at the end. It is a diagnostic script, not a test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build.sh")


def prism_bin() -> str:
    out = subprocess.run([BUILD], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def opts_for(runner: str, binary: str, *extra: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    base = {
        "prism": [
            "--runner=PrismRunner",
            f"--prism_location={binary}",
            "--prism_log_level=warn",
        ],
        "direct": ["--runner=BundleBasedDirectRunner"],
        # The default runner, pointed at the local binary: does it pick Prism?
        "switching": ["--runner=DirectRunner", f"--prism_location={binary}"],
    }[runner]
    return PipelineOptions(base + ["--streaming", *extra])


def recorder(path):
    import apache_beam as beam

    class Record(beam.DoFn):
        def __init__(self, path):
            self.path = path

        def process(self, x, w=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
            start = getattr(w, "start", None)
            rec = {
                "v": x,
                "w": None if start is None else float(start),
                "timing": int(pane.timing),
                "index": pane.index,
                "t": time.time(),
            }
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            yield x

    return beam.ParDo(Record(path))


def read(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path, encoding="utf-8")]


TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE", 3: "UNKNOWN"}

# --------------------------------------------------------------------------
# Probes: each returns (ok: bool, evidence: dict). ok=None means "not judged".
# --------------------------------------------------------------------------


def probe_teststream_window_sum(runner, binary, tmp):
    """TestStream + event-time fixed windows + CombinePerKey."""
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    out = os.path.join(tmp, "out.jsonl")
    ts = (
        TestStream()
        .add_elements(
            [
                TimestampedValue(("a", 1), 10),
                TimestampedValue(("a", 2), 20),
                TimestampedValue(("b", 5), 70),
            ]
        )
        .advance_watermark_to(65)
        .add_elements([TimestampedValue(("a", 4), 80)])
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        _ = (
            p
            | ts
            | beam.WindowInto(FixedWindows(60))
            | beam.CombinePerKey(sum)
            | beam.MapTuple(lambda k, v: [k, v])
            | recorder(out)
        )
    got = sorted((r["w"], r["v"][0], r["v"][1]) for r in read(out))
    want = [(0.0, "a", 3), (60.0, "a", 4), (60.0, "b", 5)]
    return got == want, {"got": got, "want": want}


def _timer_dofn():
    import apache_beam as beam
    from apache_beam.coders import VarIntCoder
    from apache_beam.transforms import userstate
    from apache_beam.transforms.timeutil import TimeDomain

    class TotalAtWindowEnd(beam.DoFn):
        COUNTS = userstate.BagStateSpec("counts", VarIntCoder())
        FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)

        def process(
            self,
            kv,
            w=beam.DoFn.WindowParam,
            counts=beam.DoFn.StateParam(COUNTS),
            flush=beam.DoFn.TimerParam(FLUSH),
        ):
            counts.add(kv[1])
            flush.set(w.max_timestamp())

        @userstate.on_timer(FLUSH)
        def on_flush(
            self,
            key=beam.DoFn.KeyParam,
            w=beam.DoFn.WindowParam,
            counts=beam.DoFn.StateParam(COUNTS),
        ):
            total = sum(counts.read())
            counts.clear()
            yield ("all", (key, total))

    return TotalAtWindowEnd()


def probe_timer_then_gbk(runner, binary, tmp):
    """Stateful DoFn with an event-time timer whose output goes into a GroupByKey."""
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    raw, out = os.path.join(tmp, "raw.jsonl"), os.path.join(tmp, "out.jsonl")
    ts = (
        TestStream()
        .add_elements(
            [
                TimestampedValue(("a", 1), 10),
                TimestampedValue(("b", 1), 20),
                TimestampedValue(("a", 1), 30),
            ]
        )
        .advance_watermark_to(50)
        .add_elements([TimestampedValue(("a", 1), 70)])
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        _ = (
            p
            | ts
            | beam.WindowInto(FixedWindows(60))
            | beam.ParDo(_timer_dofn())
            | "raw" >> recorder(raw)
            | beam.GroupByKey()
            | beam.MapTuple(lambda k, vs: sorted(vs))
            | "out" >> recorder(out)
        )
    got = sorted((r["w"], [tuple(x) for x in r["v"]]) for r in read(out))
    want = [(0.0, [("a", 2), ("b", 1)]), (60.0, [("a", 1)])]
    return got == want, {
        "timer_emitted": len(read(raw)),
        "after_gbk": got,
        "want": want,
    }


def _early_pipeline(p, ts, tmp, early=None):
    import apache_beam as beam
    from apache_beam.transforms import trigger
    from apache_beam.transforms.window import FixedWindows

    panes, timer = os.path.join(tmp, "panes.jsonl"), os.path.join(tmp, "timer.jsonl")
    early = trigger.AfterProcessingTime(10) if early is None else early
    _ = (
        p
        | ts
        | beam.WindowInto(
            FixedWindows(3600),
            trigger=trigger.AfterWatermark(early=early),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
        | beam.CombinePerKey(sum)
        | "panes" >> recorder(panes)
        | beam.ParDo(_timer_dofn())
        | "timer" >> recorder(timer)
    )
    return panes, timer


def probe_early_firing_teststream(runner, binary, tmp):
    """AfterWatermark(early=AfterProcessingTime) driven by TestStream processing time:
    early panes, and their sum reaches the downstream event-time timer once."""
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    ts = (
        TestStream()
        .add_elements(
            [TimestampedValue(("a", 1), 100), TimestampedValue(("b", 1), 200)]
        )
        .advance_processing_time(11)
        .advance_watermark_to(1800)
        .add_elements([TimestampedValue(("a", 1), 2000)])
        .advance_processing_time(11)
        .advance_watermark_to(3700)
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        panes, timer = _early_pipeline(p, ts, tmp)
    pane_list = [
        (r["v"][0], r["v"][1], TIMING[r["timing"]], r["index"]) for r in read(panes)
    ]
    timer_out = sorted(tuple(r["v"][1]) for r in read(timer))
    early = [x for x in pane_list if x[2] == "EARLY"]
    ok = bool(early) and timer_out == [("a", 2), ("b", 1)]
    return ok, {"panes": pane_list, "timer": timer_out}


def probe_early_firing_race(runner, binary, tmp):
    """Many keys, TestStream batches spanning window ends (as the benchmark at 2000
    posts): does any early pane reach the stateful DoFn after its timer fired?"""
    return _race(runner, binary, tmp, None)


def probe_early_count_race(runner, binary, tmp):
    """As early_firing_race, with early=AfterCount(20) instead of processing time."""
    from apache_beam.transforms import trigger

    return _race(runner, binary, tmp, trigger.AfterCount(20))


def _race(runner, binary, tmp, early):
    import random

    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    rng = random.Random(7)
    keys = [f"k{i}" for i in range(20)]
    events = sorted((rng.randrange(6 * 3600), rng.choice(keys)) for _ in range(3000))
    ts = TestStream()
    for i in range(0, len(events), 500):
        chunk = events[i : i + 500]
        ts = ts.add_elements([TimestampedValue((k, 1), t) for t, k in chunk])
        ts = ts.advance_processing_time(11).advance_watermark_to(chunk[-1][0])
    ts = ts.advance_watermark_to_infinity()
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        panes, timer = _early_pipeline(p, ts, tmp, early)
    expected_firings = len({(t // 3600, k) for t, k in events})
    fired = read(timer)
    total = sum(r["v"][1][1] for r in fired)
    return (
        len(fired) == expected_firings and total == len(events),
        {
            "timer_firings": len(fired),
            "expected_firings": expected_firings,
            "sum_of_totals": total,
            "events": len(events),
            "combine_panes": len(read(panes)),
        },
    )


def probe_early_firing_no_pt_advance(runner, binary, tmp):
    """Early AfterProcessingTime trigger with a TestStream that never advances
    processing time (so timers are still pending when windows close)."""
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    ts = (
        TestStream()
        .add_elements(
            [TimestampedValue(("a", 1), 100), TimestampedValue(("b", 1), 200)]
        )
        .advance_watermark_to(1800)
        .add_elements([TimestampedValue(("a", 1), 2000)])
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        panes, timer = _early_pipeline(p, ts, tmp)
    timer_out = sorted(tuple(r["v"][1]) for r in read(timer))
    return timer_out == [("a", 2), ("b", 1)], {"timer": timer_out}


def _late(runner, binary, tmp, lateness):
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms import trigger
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    out = os.path.join(tmp, f"late{lateness}.jsonl")
    ts = (
        TestStream()
        .add_elements([TimestampedValue(("a", 1), 10), TimestampedValue(("a", 1), 20)])
        .advance_watermark_to(100)  # window [0, 60) is now closed
        .add_elements([TimestampedValue(("a", 1), 30)])  # late by 70 s
        .advance_watermark_to(100 + 3600 + 60)  # past any allowed lateness
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        _ = (
            p
            | ts
            | beam.WindowInto(
                FixedWindows(60),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=lateness,
            )
            | beam.CombinePerKey(sum)
            | recorder(out)
        )
    return [(r["v"][1], TIMING[r["timing"]]) for r in read(out)]


def probe_late_data(runner, binary, tmp):
    """Late element: dropped with allowed_lateness=0, a LATE pane with 3600 s."""
    dropped = _late(runner, binary, tmp, 0)
    kept = _late(runner, binary, tmp, 3600)
    ok = dropped == [(2, "ON_TIME")] and kept == [(2, "ON_TIME"), (3, "LATE")]
    return ok, {
        "allowed_lateness_0": dropped,
        "allowed_lateness_3600": kept,
        "want": {"0": [(2, "ON_TIME")], "3600": [(2, "ON_TIME"), (3, "LATE")]},
    }


def probe_processing_time_timer(runner, binary, tmp):
    """Stateful DoFn with a REAL_TIME (processing-time) timer, bounded source."""
    import apache_beam as beam
    from apache_beam.coders import VarIntCoder
    from apache_beam.transforms import userstate
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.utils.timestamp import Timestamp

    out = os.path.join(tmp, "out.jsonl")

    class Buffer(beam.DoFn):
        BUF = userstate.BagStateSpec("buf", VarIntCoder())
        T = userstate.TimerSpec("t", TimeDomain.REAL_TIME)

        def process(self, kv, buf=beam.DoFn.StateParam(BUF), t=beam.DoFn.TimerParam(T)):
            buf.add(kv[1])
            t.set(Timestamp.now() + 1)

        @userstate.on_timer(T)
        def flush(self, key=beam.DoFn.KeyParam, buf=beam.DoFn.StateParam(BUF)):
            yield key, sum(buf.read())
            buf.clear()

    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        _ = (
            p
            | beam.Create([("a", 1), ("a", 2), ("b", 5)])
            | beam.ParDo(Buffer())
            | recorder(out)
        )
    got = sorted(tuple(r["v"]) for r in read(out))
    return got == [("a", 3), ("b", 5)], {"got": got}


def probe_early_firing_realtime(runner, binary, tmp):
    """Real clock: PeriodicImpulse (bounded, 12 s) into 3 s windows with early
    AfterProcessingTime(1 s) firings; all counts must arrive, job must finish."""
    return _realtime(runner, binary, tmp, workaround=False)


def probe_early_firing_realtime_lateness(runner, binary, tmp):
    """As early_firing_realtime, plus allowed_lateness=10 s (> the 1 s early delay)
    and late=AfterCount(1): the workaround that keeps window state alive until
    the pending processing-time trigger timers have fired."""
    return _realtime(runner, binary, tmp, workaround=True)


def _realtime(runner, binary, tmp, workaround):
    import apache_beam as beam
    from apache_beam.transforms import trigger
    from apache_beam.transforms.periodicsequence import PeriodicImpulse
    from apache_beam.transforms.window import FixedWindows
    from apache_beam.utils.timestamp import Timestamp

    out = os.path.join(tmp, "out.jsonl")
    start = Timestamp.now()
    with beam.Pipeline(options=opts_for(runner, binary)) as p:
        _ = (
            p
            | PeriodicImpulse(
                start_timestamp=start, stop_timestamp=start + 12, fire_interval=0.1
            )
            | beam.Map(lambda t: ("k", 1))
            | beam.WindowInto(
                FixedWindows(3),
                trigger=trigger.AfterWatermark(
                    early=trigger.AfterProcessingTime(1),
                    late=trigger.AfterCount(1) if workaround else None,
                ),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=10 if workaround else 0,
            )
            | beam.CombinePerKey(sum)
            | recorder(out)
        )
    recs = read(out)
    total = sum(r["v"][1] for r in recs)
    timings = {}
    for r in recs:
        timings[TIMING[r["timing"]]] = timings.get(TIMING[r["timing"]], 0) + 1
    return (
        total >= 115 and "EARLY" in timings,
        {"elements_counted": total, "expected_about": 120, "pane_timings": timings},
    )


def _wait_lines(path, n, limit):
    t0 = time.time()
    while time.time() - t0 < limit:
        if len(read(path)) >= n:
            return True
        time.sleep(0.2)
    return False


def probe_unbounded_cancel(runner, binary, tmp):
    """Unbounded PeriodicImpulse (no stop): wait_until_finish(duration) returns
    while RUNNING, result.cancel() stops it and no more output arrives."""
    import apache_beam as beam
    from apache_beam.transforms.periodicsequence import PeriodicImpulse

    out = os.path.join(tmp, "out.jsonl")
    p = beam.Pipeline(options=opts_for(runner, binary))
    _ = (
        p
        | PeriodicImpulse(fire_interval=0.2)
        | beam.Map(lambda t: float(t))
        | recorder(out)
    )
    t0 = time.time()
    result = p.run()
    try:
        state_after_wait = str(result.wait_until_finish(duration=5000))
    except NotImplementedError as e:  # the bundle-based DirectRunner
        state_after_wait = f"NotImplementedError: {e}"
        time.sleep(5)
    waited = time.time() - t0
    n_before = len(read(out))
    t1 = time.time()
    result.cancel()
    cancel_s = time.time() - t1
    time.sleep(2)
    final_state = str(result.state)
    n1 = len(read(out))
    time.sleep(2)
    n2 = len(read(out))
    ok = n_before > 0 and "CANCEL" in final_state and n2 == n1
    return ok, {
        "state_after_wait_until_finish_5s": state_after_wait,
        "waited_s": round(waited, 1),
        "outputs_before_cancel": n_before,
        "cancel_call_s": round(cancel_s, 2),
        "state_after_cancel": final_state,
        "outputs_2s_and_4s_after_cancel": [n1, n2],
    }


def probe_match_continuously(runner, binary, tmp):
    """fileio.MatchContinuously over a directory; a file written while the job
    runs must be read; then cancel."""
    import apache_beam as beam
    from apache_beam.io import fileio

    data = os.path.join(tmp, "in")
    os.makedirs(data)
    with open(os.path.join(data, "a.jsonl"), "w") as f:
        f.write('{"id": "1"}\n{"id": "2"}\n')
    out = os.path.join(tmp, "out.jsonl")
    p = beam.Pipeline(options=opts_for(runner, binary))
    _ = (
        p
        | fileio.MatchContinuously(os.path.join(data, "*.jsonl"), interval=1.0)
        | fileio.ReadMatches()
        | beam.FlatMap(lambda rf: rf.read_utf8().splitlines())
        | recorder(out)
    )
    result = p.run()
    first = _wait_lines(out, 2, 30)
    with open(os.path.join(data, "b.jsonl.tmp"), "w") as f:
        f.write('{"id": "3"}\n')
    os.rename(os.path.join(data, "b.jsonl.tmp"), os.path.join(data, "b.jsonl"))
    second = _wait_lines(out, 3, 30)
    state_before = str(result.state)
    result.cancel()
    time.sleep(2)
    got = sorted(r["v"] for r in read(out))
    return (
        first and second and got == ['{"id": "1"}', '{"id": "2"}', '{"id": "3"}'],
        {
            "got": got,
            "state_before_cancel": state_before,
            "state_after_cancel": str(result.state),
        },
    )


def probe_match_continuously_event_time(runner, binary, tmp):
    """MatchContinuously, then posts re-stamped to their created_at (in the past)
    and counted in 1 h windows: do they reach the windowed count, or are they
    late (the source's watermark follows the clock)? Informational."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    data = os.path.join(tmp, "in")
    os.makedirs(data)
    now = time.time()
    with open(os.path.join(data, "a.jsonl"), "w") as f:
        for i, age_h in enumerate((30, 2, 0.01)):
            f.write(json.dumps({"id": str(i), "ts": now - age_h * 3600}) + "\n")
    out = os.path.join(tmp, "out.jsonl")
    p = beam.Pipeline(options=opts_for(runner, binary))
    _ = (
        p
        | fileio.MatchContinuously(os.path.join(data, "*.jsonl"), interval=1.0)
        | fileio.ReadMatches()
        | beam.FlatMap(lambda rf: rf.read_utf8().splitlines())
        | beam.Map(lambda line: TimestampedValue(("n", 1), json.loads(line)["ts"]))
        | beam.WindowInto(FixedWindows(3600))
        | beam.CombinePerKey(sum)
        | recorder(out)
    )
    result = p.run()
    _wait_lines(out, 2, 30)
    first = [(r["w"], r["v"][1], TIMING[r["timing"]]) for r in read(out)]
    # A file that shows up later, with a post 2 h old (window already fired).
    with open(os.path.join(data, "b.jsonl.tmp"), "w") as f:
        f.write(json.dumps({"id": "9", "ts": now - 2 * 3600}) + "\n")
    os.rename(os.path.join(data, "b.jsonl.tmp"), os.path.join(data, "b.jsonl"))
    time.sleep(10)
    result.cancel()
    later = [(r["w"], r["v"][1], TIMING[r["timing"]]) for r in read(out)][len(first) :]
    return None, {
        "first_file_posts_30h_2h_36s_old": first,
        "later_file_post_2h_old": later or "dropped (late)",
        "note": "the open window of the 36 s old post never fires before cancel",
    }


def probe_which_runner(runner, binary, tmp):
    """Which engine does --runner DirectRunner --prism_location BIN --streaming pick,
    with and without a TestStream? (read from the runner's log)."""
    import logging

    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream

    msgs = []

    class H(logging.Handler):
        def emit(self, record):
            msgs.append(record.getMessage())

    h = H()
    logging.getLogger("apache_beam.runners.direct.direct_runner").addHandler(h)
    logging.getLogger("apache_beam.runners.direct.direct_runner").setLevel(logging.INFO)
    picked = {}
    for name, source in (
        ("create", lambda p: p | beam.Create([1, 2, 3])),
        (
            "teststream",
            lambda p: (
                p | TestStream().add_elements([1, 2, 3]).advance_watermark_to_infinity()
            ),
        ),
    ):
        msgs.clear()
        with beam.Pipeline(options=opts_for("switching", binary)) as p:
            _ = source(p) | beam.Map(lambda x: x)
        picked[name] = (
            "PrismRunner"
            if any("with PrismRunner" in m for m in msgs)
            else "BundleBasedDirectRunner or FnApiRunner"
        )
    return picked["create"] == "PrismRunner", picked


PROBES = {
    "teststream_window_sum": (probe_teststream_window_sum, ("prism", "direct")),
    "timer_then_gbk": (probe_timer_then_gbk, ("prism", "direct")),
    "early_firing_teststream": (probe_early_firing_teststream, ("prism", "direct")),
    "early_firing_race": (probe_early_firing_race, ("prism", "direct")),
    "early_count_race": (probe_early_count_race, ("prism", "direct")),
    "early_firing_no_pt_advance": (
        probe_early_firing_no_pt_advance,
        ("prism", "direct"),
    ),
    "late_data": (probe_late_data, ("prism", "direct")),
    "processing_time_timer": (probe_processing_time_timer, ("prism", "direct")),
    "early_firing_realtime": (probe_early_firing_realtime, ("prism",)),
    "early_firing_realtime_lateness": (
        probe_early_firing_realtime_lateness,
        ("prism",),
    ),
    "unbounded_cancel": (probe_unbounded_cancel, ("prism", "direct")),
    "match_continuously": (probe_match_continuously, ("prism", "direct")),
    "match_continuously_event_time": (probe_match_continuously_event_time, ("prism",)),
    "which_runner": (probe_which_runner, ("switching",)),
}


def child(name, runner, binary, tmp, result_path):
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    fn, _ = PROBES[name]
    t0 = time.time()
    try:
        ok, evidence = fn(runner, binary, tmp)
        res = {"ok": ok, "evidence": evidence}
    except Exception as e:  # noqa: BLE001 - the failure is the finding
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        res = {
            "ok": False,
            "error": f"{type(e).__name__}: {lines[0][:300] if lines else ''}",
        }
    res["seconds"] = round(time.time() - t0, 1)
    with open(result_path, "w") as f:
        json.dump(res, f, default=str, ensure_ascii=False)
    # Do not hang on non-daemon threads an unbounded job may leave behind, but
    # do run the atexit hooks: they stop the prism job server Beam started.
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    os._exit(0)


def run_bounded(cmd, timeout):
    """Runs cmd in its own process group; on timeout kills the group, which
    includes the prism job server the child started."""
    import signal

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err.strip().splitlines()[-5:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", [f"timed out after {timeout}s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probes", nargs="*", help="probe names (default: all)")
    ap.add_argument("--runners", default="prism,direct,switching")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--prism-bin")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json-out")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, runner, tmp, result_path = args.child
        child(name, runner, args.prism_bin, tmp, result_path)
        return
    if args.list:
        for name, (fn, runners) in PROBES.items():
            print(f"{name:28s} {','.join(runners):20s} {fn.__doc__.split(chr(10))[0]}")
        return
    print(
        "command:",
        " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        flush=True,
    )
    binary = args.prism_bin or prism_bin()
    wanted = args.probes or list(PROBES)
    runners = args.runners.split(",")
    results = {"prism_bin": binary, "probes": {}}
    for name in wanted:
        fn, probe_runners = PROBES[name]
        for runner in probe_runners:
            if runner not in runners:
                continue
            tmp = tempfile.mkdtemp(prefix=f"prism-probe-{name}-{runner}-")
            result_path = os.path.join(tmp, "result.json")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--prism-bin",
                binary,
                "--child",
                name,
                runner,
                tmp,
                result_path,
            ]
            t0 = time.time()
            rc, tail = run_bounded(cmd, args.timeout)
            if os.path.exists(result_path):
                res = json.load(open(result_path))
            else:
                res = {"ok": False, "error": "no result", "stderr_tail": tail}
            res["wall_s"] = round(time.time() - t0, 1)
            results["probes"].setdefault(name, {})[runner] = res
            verdict = {True: "ok", False: "BROKEN", None: "?"}[res.get("ok")]
            detail = res.get("error") or json.dumps(
                res.get("evidence"), ensure_ascii=False, default=str
            )
            print(
                f"{name:28s} {runner:9s} {verdict:6s} {res['wall_s']:6.1f}s  "
                f"{detail[:400]}",
                flush=True,
            )
    print(json.dumps(results, ensure_ascii=False, default=str))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, ensure_ascii=False, indent=2, default=str)


if __name__ == "__main__":
    main()
