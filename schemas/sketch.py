"""The format of ``participants_sketch`` columns: a DataSketches HLL sketch.

Serialized compact HLL_4 sketches of 64-bit author pseudonyms. Any reader with the
``datasketches`` package merges them; these helpers are the one place that knows
the sketch type and default precision, shared by the pipeline and the reports.
"""

from collections.abc import Iterable

import datasketches

DEFAULT_LG_K = 14
HLL_TYPE = datasketches.tgt_hll_type.HLL_4


def new_sketch(lg_k: int = DEFAULT_LG_K) -> datasketches.hll_sketch:
    return datasketches.hll_sketch(lg_k, HLL_TYPE)


def estimate(sketch: datasketches.hll_sketch) -> int:
    """A sketch's distinct count, rounded to the integer the tables store."""
    return int(round(sketch.get_estimate()))


def merge_sketches(serialized: Iterable[bytes], lg_k: int = DEFAULT_LG_K) -> bytes:
    """Union serialized HLL sketches (of any lg_k) into one serialized sketch."""
    union = datasketches.hll_union(lg_k)
    for blob in serialized:
        union.update(datasketches.hll_sketch.deserialize(blob))
    return union.get_result(HLL_TYPE).serialize_compact()


def merged_estimate(serialized: Iterable[bytes], lg_k: int = DEFAULT_LG_K) -> int:
    """Distinct authors over the union of serialized sketches."""
    union = datasketches.hll_union(lg_k)
    for blob in serialized:
        union.update(datasketches.hll_sketch.deserialize(blob))
    return int(round(union.get_estimate()))
