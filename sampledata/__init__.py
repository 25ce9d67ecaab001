"""Deterministic Weibo-like sample streams for the demo, tests and benchmarks."""
