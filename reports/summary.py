"""The after-run summary that ``run_local.sh`` prints: where the tables are, how
many rows each has, whether the accounting holds, what drew most people, what burst
and which events it made."""

import os

import polars as pl

from reports.queries import (
    bursts,
    dead_letter_reasons,
    events,
    hot_topics,
    volume_totals,
)
from reports.render import render_frame
from reports.tables import key_fingerprint, resolve_output, row_counts, run_manifest


def summary_text(output: str, top: int = 10) -> str:
    """The summary of one output folder as printable text (of the run its pointer
    names when the summary starts)."""
    shown = output if "://" in output else os.path.abspath(output)
    output = resolve_output(shown)
    run_id = run_manifest(output).get("run_id")
    lines = [f"Tables in {shown}" + (f" (run {run_id})" if run_id else "")]
    fingerprint = key_fingerprint(output)
    if fingerprint:
        lines.append(f"  made with pseudonym key {fingerprint} (fingerprint)")
    counts = row_counts(output)
    for table, rows in counts.items():
        lines.append(f"  {table:<15} {rows:>9,} rows   {os.path.join(shown, table)}")
    totals = volume_totals(output)
    lines.append(
        f"Input lines {totals['input_lines']:,} = {totals['posts']:,} distinct posts "
        f"+ {totals['duplicates']:,} redelivered duplicates "
        f"+ {totals['dead_letters']:,} dead letters"
        + (f" + {totals['late_posts']:,} late posts" if totals["late_posts"] else "")
        + f"; {totals['participants']:,} participants"
    )
    if totals["dead_letters"]:
        lines.append("Dead letters by reason:")
        lines.append(render_frame(dead_letter_reasons(output)))
    lines.append(
        f"Top {top} topics by participants (sketches merged over the whole run):"
    )
    lines.append(
        render_frame(
            hot_topics(output, limit=top).select(
                "kind", "topic", "participants", "posts", "reposts", "windows"
            )
        )
    )
    burst_rows = bursts(output)
    if burst_rows.is_empty():
        lines.append("Bursts: none flagged.")
    else:
        lines.append(
            f"Bursts: {burst_rows.height} (topic, window) pairs flagged; "
            "strongest first:"
        )
        lines.append(
            render_frame(
                burst_rows.select(
                    "kind", "topic", "window_start", "participants", "expected", "score"
                ).with_columns(pl.col("expected").round(1), pl.col("score").round(1)),
                max_rows=top,
            )
        )
    found = events(output, limit=top)
    if found.is_empty():
        lines.append("Events: none (a streaming run writes none; a batch run does).")
    else:
        lines.append(f"Events: {counts.get('events', 0)}, most people first:")
        lines.append(
            render_frame(
                found.select(
                    "label",
                    "onset",
                    "participants",
                    "top_topics",
                    # The first representative post, cut to fit a terminal line.
                    pl.col("representative_posts")
                    .str.split(" | ")
                    .list.first()
                    .str.slice(0, 20)
                    .alias("says"),
                )
            )
        )
    lines.append(
        f"More: python -m reports events --output {shown}; "
        f"hot [--day YYYY-MM-DD] [--week] "
        "[--format table|csv|json|html]; timeline TOPIC; bursts; volume; "
        "notebook: notebooks/hot_topics.ipynb"
    )
    return "\n".join(lines)
