"""Write a sample post stream and its truth.

    python -m sampledata --out sample/posts.jsonl.gz     # the bundled sample
    python -m sampledata --out /tmp/p.jsonl.gz --posts-per-day 330000 --days 3
    python -m sampledata --out /tmp/day.jsonl.gz --large  # the 990,000-author day

The truth (counts, planted bursts, exact authors per planted hashtag) goes to
``<out>.truth.json`` beside the stream.
"""

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

from sampledata.generator import (
    GeneratorConfig,
    PlantedBurst,
    default_sample_config,
    generate,
    write_lines,
)

LARGE_HASHTAG = "法院误发死刑消息"


def large_day_config(seed: int) -> GeneratorConfig:
    """A day on which one hashtag draws 990,000 distinct authors among about 1.3
    million posts, on top of a usual background (with a quiet day before it so the
    detector has a history)."""
    start = GeneratorConfig().start
    return GeneratorConfig(
        seed=seed,
        days=2,
        posts_per_day=60_000,
        authors=40_000,
        bursts=(
            PlantedBurst(
                LARGE_HASHTAG,
                start + datetime.timedelta(days=1, hours=9),
                990_000,
                shape="ramp",
                rise_hours=3,
                hours=14,
                posts_per_author=1.2,
                new=True,
            ),
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="Output .jsonl or .jsonl.gz"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, help="Days of background traffic")
    parser.add_argument("--posts-per-day", type=int, help="Background posts per day")
    parser.add_argument("--authors", type=int, help="Background authors")
    parser.add_argument("--large", action="store_true", help="The 990,000-author day")
    args = parser.parse_args(argv)
    config = (
        large_day_config(args.seed) if args.large else default_sample_config(args.seed)
    )
    overrides = {
        field: value
        for field, value in (
            ("days", args.days),
            ("posts_per_day", args.posts_per_day),
            ("authors", args.authors),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **overrides)
    lines, truth = generate(config)
    write_lines(lines, args.out)
    truth_path = args.out.with_name(args.out.name + ".truth.json")
    truth_path.write_text(truth.to_json(), encoding="utf-8")
    print(
        f"{truth.lines} lines ({truth.posts} posts, {truth.duplicates} duplicates, "
        f"{truth.malformed} malformed) -> {args.out}; truth -> {truth_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
