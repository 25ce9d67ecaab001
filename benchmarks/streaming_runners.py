#!/usr/bin/env python
"""Streaming runner benchmark: posts/s and correctness on the local Beam runners.

Not a test: it prints figures. Run from the repository root::

    .venv/bin/python benchmarks/streaming_runners.py            # ~2-4 minutes
    .venv/bin/python benchmarks/streaming_runners.py \\
        --runners prism --posts 20000 --repeat 1

The same small streaming pipeline runs on

* ``prism``  -- Beam's Prism runner, the binary built by ``deploy/prism/build.sh``
  (``--runner=PrismRunner --prism_location=BIN --streaming``), fed by a TestStream;
* ``direct`` -- the Python-only bundle-based DirectRunner in streaming mode
  (``--runner=BundleBasedDirectRunner --streaming``), fed by the same TestStream,
  at its own, smaller sizes (``--direct-posts``);
* ``fnapi``  -- the FnApiRunner in batch mode (``beam.Create`` instead of the
  TestStream, no ``--streaming``), as a reference. It cannot run the early
  AfterProcessingTime trigger in batch (it has no clock for it), so it tries it
  once, reports how it fails, and runs the pipeline without early firings.

The TestStream adds the posts in batches of ``--batch`` (in created_at order);
after each batch it advances processing time past the early-firing delay, then
the watermark to the newest post of the batch.

Pipeline::

    JSON lines -> parse, event time from created_at (+08:00) -> hashtags
      -> FixedWindows(1h), AfterWatermark(early=AfterProcessingTime(10s)), DISCARDING
      -> CombinePerKey(count) per (window, hashtag)          [panes recorded]
      -> stateful DoFn (bag state + event-time timer at window end) emits one
         (window, (hashtag, total)) per key and window from its timer
      -> GroupByKey(window) -> collect                         [recorded]

Correctness is checked against a plain-Python computation over the same posts:
the combine panes must add up to the true count per (window, hashtag); the timer
must fire exactly once per (hashtag, window); and what it emits, after the
GroupByKey, must hold exactly one total per hashtag per window, equal to the
true count.

Each runner runs in its own child process with a time limit, so one that hangs
cannot stall the others. A tiny warm-up pipeline runs first in that child, so
posts/s excludes runner start-up, which is reported on its own.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW_S = 3600
EARLY_DELAY_S = 10
TZ8 = datetime.timezone(datetime.timedelta(hours=8))
# 2026-05-01 00:00 +08:00, on an hour boundary.
EPOCH0 = int(datetime.datetime(2026, 5, 1, tzinfo=TZ8).timestamp())
TOPICS = [
    "雅安地震",
    "高考",
    "春运",
    "世界杯",
    "双十一",
    "国庆假期",
    "新冠疫苗",
    "股市",
    "北京暴雨",
    "五月天演唱会",
    "神舟十八号",
    "减肥",
    "考研",
    "房价",
    "电动车",
    "AI绘画",
    "垃圾分类",
    "延迟退休",
    "外卖骑手",
    "熊猫",
]
HASHTAG_RE = re.compile(r"#([^#\s]{1,64})#")


# --------------------------------------------------------------------------
# Synthetic posts and the plain-Python reference
# --------------------------------------------------------------------------


def make_posts(n: int, hours: int, seed: int = 7) -> list[str]:
    """n JSON lines, in created_at order, spread over `hours` hours."""
    rng = random.Random(seed)
    span = hours * WINDOW_S
    offsets = sorted(rng.randrange(span) for _ in range(n))
    posts = []
    for i, off in enumerate(offsets):
        tags = rng.sample(TOPICS, rng.choice((1, 1, 2, 3)))
        text = (
            " ".join(f"#{t}#" for t in tags)
            + f" 第{i}条 转发微博 @用户{rng.randrange(500)}"
        )
        created = datetime.datetime.fromtimestamp(EPOCH0 + off, TZ8).isoformat()
        posts.append(
            json.dumps(
                {
                    "id": str(4_000_000_000 + i),
                    "user_id": str(1_000_000 + rng.randrange(5000)),
                    "created_at": created,
                    "text": text,
                },
                ensure_ascii=False,
            )
        )
    return posts


def parse_post(line: str):
    post = json.loads(line)
    ts = datetime.datetime.fromisoformat(post["created_at"]).timestamp()
    # A hashtag counts once per post.
    tags = sorted(set(HASHTAG_RE.findall(post["text"])))
    return ts, tags


def expected_counts(posts: list[str]) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = collections.Counter()
    for line in posts:
        ts, tags = parse_post(line)
        win = int(ts) // WINDOW_S * WINDOW_S
        for t in tags:
            counts[(win, t)] += 1
    return dict(counts)


# --------------------------------------------------------------------------
# The pipeline (imports of Beam stay inside so the parent process is light)
# --------------------------------------------------------------------------


def build_pipeline(
    p, posts, streaming: bool, out_dir: str, batch: int, early: bool = True
):
    import apache_beam as beam
    from apache_beam.coders import StrUtf8Coder, VarIntCoder
    from apache_beam.transforms import trigger, userstate
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    class Record(beam.DoFn):
        """Appends what it sees to a JSON-lines file (works in any local runner:
        the LOOPBACK / in-process workers share this machine's filesystem)."""

        def __init__(self, path, with_pane):
            self.path = path
            self.with_pane = with_pane

        def process(
            self, element, w=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam
        ):
            rec = {"window": int(w.start), "value": element}
            if self.with_pane:
                rec["pane"] = {
                    "timing": int(pane.timing),
                    "index": pane.index,
                    "is_last": pane.is_last,
                }
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            yield element

    class ParseAndStamp(beam.DoFn):
        def process(self, line):
            ts, tags = parse_post(line)
            for t in tags:
                yield TimestampedValue(t, ts)

    class TotalAtWindowEnd(beam.DoFn):
        """Sums the (discarding) panes of a key in a window; emits the total
        once, from an event-time timer set at the end of the window."""

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
            yield (int(w.start), (key, total))

    if streaming:
        from apache_beam.testing.test_stream import TestStream

        ts = TestStream(coder=StrUtf8Coder())
        for i in range(0, len(posts), batch):
            chunk = posts[i : i + batch]
            ts = ts.add_elements(chunk)
            # Processing time passes, so the early (AfterProcessingTime) trigger
            # can fire, then the watermark moves to the newest post of the batch.
            ts = ts.advance_processing_time(EARLY_DELAY_S + 1)
            last_ts, _ = parse_post(chunk[-1])
            ts = ts.advance_watermark_to(last_ts)
        ts = ts.advance_watermark_to_infinity()
        lines = p | "Posts" >> ts
    else:
        lines = p | "Posts" >> beam.Create(posts, reshuffle=False)

    counts = (
        lines
        | "ParseAndStamp" >> beam.ParDo(ParseAndStamp())
        | "Hour"
        >> beam.WindowInto(
            FixedWindows(WINDOW_S),
            trigger=trigger.AfterWatermark(
                early=trigger.AfterProcessingTime(EARLY_DELAY_S) if early else None
            ),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
        | "PairOne" >> beam.Map(lambda t: (t, 1))
        | "CountPerTag" >> beam.CombinePerKey(sum)
        | "RecordPanes"
        >> beam.ParDo(Record(os.path.join(out_dir, "panes.jsonl"), True))
    )
    _ = (
        counts
        | "TotalAtWindowEnd" >> beam.ParDo(TotalAtWindowEnd())
        | "RecordTimerRaw"
        >> beam.ParDo(Record(os.path.join(out_dir, "timer_raw.jsonl"), False))
        | "GroupByWindow" >> beam.GroupByKey()
        | "Sorted" >> beam.MapTuple(lambda win, tag_totals: (win, sorted(tag_totals)))
        | "RecordTimerOutput"
        >> beam.ParDo(Record(os.path.join(out_dir, "timer.jsonl"), False))
    )


def check(posts, out_dir):
    exp = expected_counts(posts)
    panes_path = os.path.join(out_dir, "panes.jsonl")
    timer_path = os.path.join(out_dir, "timer.jsonl")
    panes = (
        [json.loads(line) for line in open(panes_path, encoding="utf-8")]
        if os.path.exists(panes_path)
        else []
    )
    timer = (
        [json.loads(line) for line in open(timer_path, encoding="utf-8")]
        if os.path.exists(timer_path)
        else []
    )

    summed: dict[tuple[int, str], int] = collections.Counter()
    timing_names = {0: "EARLY", 1: "ON_TIME", 2: "LATE", 3: "UNKNOWN"}
    timings = collections.Counter()
    for rec in panes:
        tag, n = rec["value"]
        summed[(rec["window"], tag)] += n
        timings[timing_names.get(rec["pane"]["timing"], "?")] += 1
    combine_ok = dict(summed) == exp

    exp_by_win: dict[int, list] = collections.defaultdict(list)
    for (win, tag), n in exp.items():
        exp_by_win[win].append([tag, n])
    exp_timer = {win: sorted(v) for win, v in exp_by_win.items()}
    # The GroupByKey after the timer inherits the continuation of the early
    # trigger, so it may fire several (discarding) panes per window: their
    # union must hold each hashtag of the window exactly once, with its total.
    got_timer: dict[int, list] = {}
    for rec in timer:
        win, tag_totals = rec["value"]
        got_timer.setdefault(win, []).extend(tag_totals)
    got_timer = {w: sorted(v) for w, v in got_timer.items()}
    timer_totals = sum(n for v in got_timer.values() for _, n in v)
    # ...and the timer must have fired exactly once per (hashtag, window): a
    # second firing means a pane reached the stateful DoFn after the watermark
    # had passed the end of its window.
    raw_path = os.path.join(out_dir, "timer_raw.jsonl")
    timer_raw = (
        sum(1 for _ in open(raw_path, encoding="utf-8"))
        if os.path.exists(raw_path)
        else 0
    )
    timer_ok = got_timer == exp_timer and timer_raw == len(exp)
    return {
        "correct": combine_ok and timer_ok,
        "combine_correct": combine_ok,
        "timer_then_gbk_correct": timer_ok,
        "expected_tag_counts": sum(exp.values()),
        "combine_panes": len(panes),
        "combine_empty_panes": sum(1 for r in panes if r["value"][1] == 0),
        "pane_timings": dict(timings),
        "combine_counted": sum(summed.values()),
        "timer_windows_expected": len(exp_timer),
        "timer_windows_got": len(got_timer),
        "timer_emitted": timer_raw,
        "timer_emitted_expected": len(exp),
        "timer_gbk_firings": len(timer),
        "timer_counted": timer_totals,
    }


def runner_args(runner: str, prism_bin: str | None) -> tuple[list[str], bool]:
    if runner == "prism":
        return (
            [
                "--runner=PrismRunner",
                f"--prism_location={prism_bin}",
                "--streaming",
                "--prism_log_level=warn",
            ],
            True,
        )
    if runner == "direct":
        return (["--runner=BundleBasedDirectRunner", "--streaming"], True)
    if runner == "fnapi":
        return (["--runner=FnApiRunner"], False)
    raise ValueError(runner)


def child(args) -> None:
    """Runs one runner (warm-up, then the timed run) and writes a JSON result."""
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    t_import = time.time()
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    import_s = time.time() - t_import

    beam_args, streaming = runner_args(args.child, args.prism_bin)
    result = {
        "runner": args.child,
        "pipeline_args": beam_args,
        "import_s": round(import_s, 2),
    }

    early = True

    def run(posts, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        opts = PipelineOptions(beam_args)
        t0 = time.time()
        p = beam.Pipeline(options=opts)
        build_pipeline(p, posts, streaming, out_dir, args.batch, early)
        state = p.run().wait_until_finish()
        return time.time() - t0, str(state)

    warm = make_posts(args.warmup_posts, 2, seed=1)
    if not streaming:
        # The batch FnApiRunner has no processing-time clock for triggers: try the
        # early-firing trigger once, record how it fails, then run without it.
        try:
            run(warm, os.path.join(args.out, "early_probe"))
            result["early_trigger"] = "ok"
        except Exception as e:  # noqa: BLE001 - a figure, not a test
            result["early_trigger"] = (
                f"fails: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
            )
            early = False
    result["early_firings_in_pipeline"] = early
    warm_s, _ = run(warm, os.path.join(args.out, "warmup"))
    result["warmup_posts"] = len(warm)
    result["warmup_s"] = round(warm_s, 2)
    result["warmup_check"] = check(warm, os.path.join(args.out, "warmup"))

    posts = make_posts(args.n, args.hours)
    secs, state = run(posts, os.path.join(args.out, "main"))
    result.update(
        {
            "posts": len(posts),
            "seconds": round(secs, 2),
            "posts_per_s": round(len(posts) / secs, 1),
            "state": state,
        }
    )
    result.update(check(posts, os.path.join(args.out, "main")))
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f)


def find_prism(explicit: str | None) -> str:
    if explicit:
        return explicit
    out = subprocess.run(
        [os.path.join(REPO, "deploy", "prism", "build.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run_child(args, runner: str, n: int, prism_bin: str | None) -> dict:
    out = tempfile.mkdtemp(prefix=f"yuqing-bench-{runner}-{n}-")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        runner,
        "--n",
        str(n),
        "--out",
        out,
        "--hours",
        str(args.hours),
        "--batch",
        str(args.batch),
        "--warmup-posts",
        str(args.warmup_posts),
    ]
    if prism_bin:
        cmd += ["--prism-bin", prism_bin]
    t0 = time.time()
    # Own process group, so a timeout also kills the prism job server the
    # child started.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=args.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        rc = f"timeout after {args.timeout}s"
    wall = time.time() - t0
    res_path = os.path.join(out, "result.json")
    if os.path.exists(res_path):
        res = json.load(open(res_path))
    else:
        res = {
            "runner": runner,
            "posts": n,
            "error": f"exit {rc}",
            "stderr_tail": err.strip().splitlines()[-15:],
        }
        # A timeout still leaves what the pipeline wrote so far.
        if os.path.exists(os.path.join(out, "main")):
            res.update(check(make_posts(n, args.hours), os.path.join(out, "main")))
    res["child_wall_s"] = round(wall, 1)
    res["output_dir"] = out
    return res


def describe(res: dict) -> str:
    line = f"{res['runner']:7s} "
    if "posts_per_s" in res:
        line += (
            f"{res['posts']:6d} posts in {res['seconds']:6.2f}s = "
            f"{res['posts_per_s']:7.1f} posts/s"
            f"  (start-up+warm-up {res['warmup_s']:.2f}s)"
        )
        if len(res.get("runs_posts_per_s", [])) > 1:
            line += f"  runs: {res['runs_posts_per_s']} correct: {res['runs_correct']}"
    else:
        line += f"{res['posts']:6d} posts: {res['error']}"
    if "correct" in res:
        line += (
            f"\n        correct={res['correct']}: combine={res['combine_correct']}"
            f" timer->GBK={res['timer_then_gbk_correct']}"
            f" (timer fired {res['timer_emitted']}x for {res['timer_emitted_expected']}"
            f" (hashtag, window) pairs; GBK windows {res['timer_windows_got']}/"
            f"{res['timer_windows_expected']}; counted {res['timer_counted']}/"
            f"{res['expected_tag_counts']}) panes={res['pane_timings']}"
        )
    if res.get("early_trigger", "ok") != "ok":
        line += (
            f"\n        early-firing trigger: {res['early_trigger']} -> ran without it"
        )
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runners", default="prism,direct,fnapi")
    ap.add_argument(
        "--posts",
        type=sizes,
        default=[2000, 20000],
        help="comma-separated sizes for prism and fnapi (default 2000,20000)",
    )
    ap.add_argument(
        "--direct-posts",
        type=sizes,
        default=[2000],
        help="sizes for the bundle-based DirectRunner (default 2000)",
    )
    ap.add_argument("--hours", type=int, default=6, help="event-time span of the posts")
    ap.add_argument("--batch", type=int, default=500, help="posts per TestStream event")
    ap.add_argument("--warmup-posts", type=int, default=20)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per (runner, size); the median posts/s is reported",
    )
    ap.add_argument("--prism-bin", help="prism binary (default: deploy/prism/build.sh)")
    ap.add_argument("--json-out", help="also write the JSON object to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    print("command:", command, flush=True)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    prism_bin = find_prism(args.prism_bin) if "prism" in runners else None
    from importlib.metadata import version

    summary = {
        "command": command,
        "beam": version("apache-beam"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "prism_bin": prism_bin,
        "hours": args.hours,
        "batch": args.batch,
        "results": [],
    }
    summary["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    for runner in runners:
        for n in args.direct_posts if runner == "direct" else args.posts:
            runs = [run_child(args, runner, n, prism_bin) for _ in range(args.repeat)]
            timed = sorted(
                (r for r in runs if "posts_per_s" in r), key=lambda r: r["posts_per_s"]
            )
            # Report the median run; keep every run's rate and verdict.
            res = dict(timed[len(timed) // 2]) if timed else dict(runs[-1])
            res["runs_posts_per_s"] = [r.get("posts_per_s") for r in runs]
            res["runs_correct"] = [r.get("correct") for r in runs]
            summary["results"].append(res)
            print(describe(res), flush=True)
    summary["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"load average (1, 5, 15 min): start {summary['loadavg_start']}, "
        f"end {summary['loadavg_end']} on {os.cpu_count()} CPUs",
        flush=True,
    )
    print(json.dumps(summary, ensure_ascii=False))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
