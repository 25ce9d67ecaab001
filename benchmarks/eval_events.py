"""Are events the happenings a person would name, one row each?

On the real Weibo cascades (``--cascades``) it runs ``pipelines.volume`` (all topic
kinds) and, for every surging cascade (at least 30 distinct accounts reposting
within 2 hours of the source post: ``benchmarks/eval_bursts.py``'s definition), finds
the events whose top representative post is the cascade's source post. It prints:

- covered: surging cascades with exactly one such event;
- represented: surging cascades among the representative posts of exactly one
  event (two cascades of one story are one event, which only one of them leads);
- events per surging cascade: all published events over the surging cascades.

On planted streams (``--seeds``, the generator's six planted bursts per seed, all
topic kinds) it prints how many planted bursts are exactly one event (an event
holding the planted hashtag while the burst is under way) and the events made of
background topics alone, per simulated day.

    python benchmarks/eval_events.py --cascades ../shared/data/weibo_cascades
    python benchmarks/eval_events.py --seeds 2 --cascades ../shared/data/weibo_cascades

Exit status 1 when a ``--min-*`` or ``--max-*`` bound is not met. ``--json`` prints
the figures as one JSON object as well.
"""

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_bursts import (  # noqa: E402
    read_cascade_posts,
    read_table,
    run_pipeline,
    run_planted_seed,
    surging_sources,
)

ALL_KINDS = "hashtag,mention,entity,keyword"


def cascade_files(folder: Path) -> Path:
    """The cascades' posts file: ``folder`` itself, or the dev file in it."""
    return folder if folder.is_file() else folder / "weibo_cascades_dev.jsonl.gz"


def representative_ids(events: pl.DataFrame) -> list[set[str]]:
    """Each event's representative post ids."""
    return [
        {post["id"] for post in posts}
        for posts in events["representative_posts"].to_list()
    ]


def top_posts(events: pl.DataFrame) -> list[str | None]:
    """Each event's top representative post id (None: it has none)."""
    return [
        posts[0]["id"] if posts else None
        for posts in events["representative_posts"].to_list()
    ]


def evaluate_cascades(folder: Path, work: str, extra: tuple[str, ...]) -> dict:
    """Per surging cascade: the events whose top representative post is its source."""
    posts_path = cascade_files(folder)
    output = str(Path(work) / "cascades" / "out")
    run_pipeline(str(posts_path), output, ALL_KINDS, extra)
    events = read_table(output, "events")
    tops, listed = top_posts(events), representative_ids(events)
    labels = events["label"].to_list()
    surging = surging_sources(read_cascade_posts(posts_path))
    rows = []
    for source, accounts in sorted(surging.items()):
        matching = [
            label for label, top in zip(labels, tops, strict=True) if top == source
        ]
        among = sum(source in ids for ids in listed)
        rows.append(
            {"cascade": source, "people": accounts, "events": matching, "among": among}
        )
    covered = sum(len(row["events"]) == 1 for row in rows)
    # Two cascades of one story (reposted sources of the same news) are one event:
    # only one of them can lead it, the other is among its representative posts.
    represented = sum(row["among"] == 1 for row in rows)
    return {
        "cascades_command": "python benchmarks/eval_events.py --cascades "
        + str(folder),
        "surging_cascades": len(rows),
        "covered_by_one_event": covered,
        "covered_share": round(covered / len(rows), 3) if rows else 0.0,
        "represented_by_one_event": represented,
        "represented_share": round(represented / len(rows), 3) if rows else 0.0,
        "events": events.height,
        "events_per_surging_cascade": round(events.height / len(rows), 3)
        if rows
        else 0.0,
        "rows": rows,
    }


def evaluate_planted(
    seeds: range, days: int, posts_per_day: int, work: str, extra: tuple[str, ...]
) -> dict:
    """Planted bursts that are exactly one event, and background-only events a day."""
    planted = single = background_events = 0
    for seed in seeds:
        bursts, output = run_planted_seed(
            seed, days, posts_per_day, work, ALL_KINDS, extra
        )
        events = read_table(output, "events")
        hashtags = [
            {topic["topic"] for topic in topics if topic["kind"] == "hashtag"}
            for topics in events["topics"].to_list()
        ]
        spans = list(zip(events["onset"], events["end"], strict=True))
        planted_tags = {burst.hashtag.lower() for burst in bursts}
        counts = []
        for burst in bursts:
            # The events holding its hashtag while it is under way: one before its
            # onset is the background's (a hashtag it planted on may burst there).
            tag, start = burst.hashtag.lower(), burst.onset
            until = start + datetime.timedelta(hours=burst.hours)
            counts.append(
                sum(
                    tag in tags and onset <= until and end > start
                    for tags, (onset, end) in zip(hashtags, spans, strict=True)
                )
            )
        planted += len(bursts)
        single += sum(count == 1 for count in counts)
        alone = sum(not (tags & planted_tags) for tags in hashtags)
        background_events += alone
        print(
            f"seed {seed}: events per planted burst {counts}, "
            f"background-only events {alone}",
            flush=True,
        )
    simulated_days = days * len(seeds)
    return {
        "planted_command": f"python benchmarks/eval_events.py --seeds {len(seeds)}",
        "planted_bursts": planted,
        "planted_single_event_share": round(single / planted, 3) if planted else 0.0,
        "background_events_per_day": round(background_events / simulated_days, 3)
        if simulated_days
        else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=0, help="Planted streams")
    parser.add_argument("--first-seed", type=int, default=11)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--posts-per-day", type=int, default=15_000)
    parser.add_argument("--cascades", type=Path, default=None)
    parser.add_argument("--min-covered-share", type=float, default=None)
    parser.add_argument("--max-events-per-cascade", type=float, default=None)
    parser.add_argument("--min-planted-share", type=float, default=None)
    parser.add_argument("--max-background-per-day", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("pipeline_args", nargs="*", help="Pipeline options after --")
    args = parser.parse_args(argv)
    extra = tuple(args.pipeline_args)
    figures: dict = {"pipeline_args": list(extra)}
    with tempfile.TemporaryDirectory(prefix="eval-events-") as work:
        if args.seeds:
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            figures.update(
                evaluate_planted(seeds, args.days, args.posts_per_day, work, extra)
            )
            print(
                f"planted: {figures['planted_single_event_share']:.3f} of "
                f"{figures['planted_bursts']} planted bursts are one event; "
                f"background-only events per day "
                f"{figures['background_events_per_day']:.2f}"
            )
        if args.cascades:
            cascades = evaluate_cascades(args.cascades, work, extra)
            rows = cascades.pop("rows")
            figures.update(cascades)
            print(
                f"real cascades: {cascades['surging_cascades']} surging; covered by "
                f"exactly one event led by the source post: "
                f"{cascades['covered_by_one_event']} "
                f"({cascades['covered_share']:.3f}); among the representative posts "
                f"of exactly one event: {cascades['represented_by_one_event']} "
                f"({cascades['represented_share']:.3f}); {cascades['events']} events, "
                f"{cascades['events_per_surging_cascade']:.2f} per surging cascade"
            )
            for row in rows:
                if len(row["events"]) != 1:
                    print(
                        f"  {row['cascade']} ({row['people']} people): {row['events']}"
                    )
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    bounds = (
        ("covered_share", args.min_covered_share, 1),
        ("events_per_surging_cascade", args.max_events_per_cascade, -1),
        ("planted_single_event_share", args.min_planted_share, 1),
        ("background_events_per_day", args.max_background_per_day, -1),
    )
    failed = [
        f"{name} {figures.get(name)} vs bound {bound}"
        for name, bound, sign in bounds
        if bound is not None and sign * (figures.get(name, 0.0) - bound) < 0
    ]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
