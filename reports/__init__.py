"""Polars queries over the pipeline's output folder: what analysts read.

Everything here reads the Parquet tables (lazily, with hive partitions) and never
imports Beam.

- ``queries``: one function per question (hot topics of a day or week, a topic's
  timeline, burst episodes, volume), each returning a polars DataFrame;
- ``tables``: lazy scans of the tables; ``panes``: the tables of a running stream,
  window by window at their latest pane;
- ``periods``: local calendar days and weeks as UTC bounds;
- ``labels``: topics as readers see them (``#雅安地震#``, ``@人民日报``);
- ``charts`` and ``fonts``: matplotlib figures with Chinese labels;
- ``commands`` and ``render``: the reports of ``python -m reports`` as terminal
  tables, CSV, JSON or self-contained HTML;
- ``summary``: what ``run_local.sh`` prints after a run.
"""
