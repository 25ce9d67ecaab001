"""Polars queries over the pipeline's output folder: what analysts read.

Everything here reads the Parquet tables (lazily, with hive partitions) and never
imports Beam.
"""
