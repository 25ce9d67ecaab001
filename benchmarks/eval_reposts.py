"""How many reposts does the batch pipeline credit to the topics of their chain's root?

Runs the pipeline's own steps (``ReadPosts`` -> ``ExtractTopicsFn`` ->
``CreditReposts``, FnApiRunner) on a file of posts (by default the real Weibo
cascades) and checks each repost against a plain-Python walk up its ``repost_of``
chain: a repost whose chain reaches a source post in the file (a post that is not a
repost) is credited when every topic of that source is among the repost's counted
topics. It prints the reposts, how many reach a source (by hops from it), how many
of those have a source with at least one topic, and the share credited among them
(the issue's aim: at least 0.99).

    python benchmarks/eval_reposts.py
    python benchmarks/eval_reposts.py --topic-kinds hashtag,mention --min-share 0.99
    python benchmarks/eval_reposts.py --input posts.jsonl.gz --json

Exit status 1 when ``--min-share`` is not met.
"""

import argparse
import collections
import glob
import gzip
import json
import sys
import tempfile
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.extract import ExtractTopicsFn, parse_kinds  # noqa: E402
from transforms.posts import InvalidPost, decode_json_line  # noqa: E402
from transforms.read import ReadPosts  # noqa: E402
from transforms.reposts import CreditWindows  # noqa: E402
from transforms.topics import TOPIC_KINDS  # noqa: E402
from transforms.window_posts import post_id_key  # noqa: E402
from transforms.windows import window_fn_for  # noqa: E402

CASCADES = ROOT.parent / "shared" / "data" / "weibo_cascades"
EVAL_KEY = bytes.fromhex("5eed" * 16)


def counted_topics(input_path: str, kinds: str, work: str) -> dict[str, list]:
    """{post id key: [is_repost, counted (kind, topic) pairs]} from the batch
    pipeline's own steps, up to the windows' credited rows (copies carry the same
    credit)."""
    prefix = str(Path(work) / "counted")
    with beam.Pipeline(options=PipelineOptions(["--direct_num_workers", "1"])) as p:
        read = p | "Read" >> ReadPosts([input_path], EVAL_KEY)
        (
            read["posts"]
            | "Extract" >> beam.ParDo(ExtractTopicsFn(parse_kinds(kinds)))
            | "Credit" >> CreditWindows(window_fn_for(3600, "UTC"), credit=True)
            | "Rows" >> beam.FlatMap(window_rows)
            | "Write" >> beam.io.WriteToText(prefix)
        )
    counted = {}
    for path in glob.glob(prefix + "*"):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                id_key, is_repost, topics = json.loads(line)
                counted[id_key] = [is_repost, [tuple(pair) for pair in topics]]
    return counted


def window_rows(keyed) -> list[str]:
    """(bounds, WindowPosts) -> one JSON line per row: [id key, is repost, topics]."""
    _, posts = keyed
    posts.unpack()
    lines = []
    for row in range(len(posts)):
        _, is_repost, topics = posts.row_summary(row)
        lines.append(
            json.dumps([posts.ids[row], is_repost, topics], ensure_ascii=False)
        )
    return lines


def read_parents(input_path: str) -> dict[str, str | None]:
    """{post id: its repost_of or None}, from the earliest copy of each id."""
    earliest: dict[str, tuple] = {}
    opener = gzip.open if input_path.endswith(".gz") else open
    with opener(input_path, "rb") as handle:
        for line in handle:
            try:
                record = decode_json_line(line)
            except InvalidPost:
                continue
            if record.get("id") is None:
                continue
            post_id = str(record["id"]).strip()
            parent = record.get("repost_of")
            parent = str(parent).strip() or None if parent is not None else None
            created = str(record.get("created_at"))
            if post_id not in earliest or created < earliest[post_id][0]:
                earliest[post_id] = (created, parent)
    return {post_id: parent for post_id, (_, parent) in earliest.items()}


def walk_to_source(post_id: str, parents: dict[str, str | None]) -> tuple:
    """(source id, hops) when the chain reaches a post that is not a repost, else
    (None, hops walked) for a chain that leaves the file or loops."""
    seen = {post_id}
    current, hops = post_id, 0
    while True:
        parent = parents.get(current)
        if parent is None:
            return (current, hops) if hops else (None, 0)
        if parent not in parents or parent in seen:
            return None, hops
        seen.add(parent)
        current, hops = parent, hops + 1


def evaluate(input_path: str, kinds: str) -> dict:
    parents = read_parents(input_path)
    with tempfile.TemporaryDirectory(prefix="eval-reposts-") as work:
        counted = counted_topics(input_path, kinds, work)
    reposts = [post_id for post_id, parent in parents.items() if parent is not None]
    hops = collections.Counter()
    reaching = with_topics = credited = 0
    missed = []
    for post_id in reposts:
        source, depth = walk_to_source(post_id, parents)
        if source is None:
            continue
        post_key, source_key = post_id_key(post_id), post_id_key(source)
        if post_key not in counted or source_key not in counted:
            continue
        reaching += 1
        hops[depth] += 1
        source_topics = counted[source_key][1]
        if not source_topics:
            continue
        with_topics += 1
        if set(source_topics) <= set(counted[post_key][1]):
            credited += 1
        elif len(missed) < 5:
            missed.append(post_id)
    within = {
        n: round(sum(c for d, c in hops.items() if d <= n) / max(reaching, 1), 3)
        for n in (1, 2, 4)
    }
    return {
        "input": input_path,
        "topic_kinds": kinds,
        "reposts": len(reposts),
        "reaching_a_source": reaching,
        "deepest_chain": max(hops, default=0),
        "share_within_hops": within,
        "source_has_topics": with_topics,
        "credited": credited,
        "credited_share": round(credited / with_topics, 4) if with_topics else None,
        "missed_examples": missed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input", default=str(CASCADES / "weibo_cascades_dev.jsonl.gz")
    )
    parser.add_argument("--topic-kinds", default=",".join(TOPIC_KINDS))
    parser.add_argument("--min-share", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.input).exists():
        print(f"error: {args.input}: no such file", file=sys.stderr)
        return 2
    figures = evaluate(args.input, args.topic_kinds)
    print(f"reposts                         {figures['reposts']:,}")
    print(
        f"chain reaches a source in file  {figures['reaching_a_source']:,}"
        f"  (within 1/2/4 hops: {figures['share_within_hops']}, "
        f"deepest {figures['deepest_chain']})"
    )
    print(f"  whose source has a topic      {figures['source_has_topics']:,}")
    print(
        f"  credited all its topics       {figures['credited']:,}"
        f"  share {figures['credited_share']}   (aim >= 0.99)"
    )
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    share = figures["credited_share"] or 0.0
    if args.min_share is not None and share < args.min_share:
        print(f"FAILED: credited share {share} < {args.min_share}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
