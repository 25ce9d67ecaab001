"""Batch: a file slice read, parsed and summarized in one step, its posts gathered
per window as they are read.

Parsing, extracting topics, keying by window and the combine's first fold are the
same functions as the step-by-step path (``ParseSlicesFn``, ``ExtractTopicsFn``,
``window_bounds``, ``add_post``, ``chain_edge``); doing them in one DoFn per slice
hands the runner one element per window of the slice instead of one per post and
step, which is most of what a run over years of sparse windows spends beyond the
work itself. Dead letters leave as they are found, as before.
"""

from collections.abc import Iterable, Sequence

import apache_beam as beam
from apache_beam.transforms.window import WindowFn

from schemas.keys import PseudonymKeySource
from schemas.records import Post
from transforms.aggregate import add_post, window_bounds
from transforms.extract import ExtractTopicsFn
from transforms.files import FileSlice
from transforms.read import EDGES, ParseSlicesFn
from transforms.reposts import ChainEdges, chain_edge
from transforms.window_posts import WindowPosts


class SummarizeSlicesFn(ParseSlicesFn):
    """FileSlice -> ((window start, window end), WindowPosts) per window its posts
    fall in (main output), its posts' ``ChainEdges`` (``EDGES``) and its dead
    letters (``DEAD_LETTERS``)."""

    def __init__(
        self,
        key_source: PseudonymKeySource,
        max_line_bytes: int,
        window_fn: WindowFn,
        kinds: Sequence[str],
        analyzer_config: dict | None = None,
        spill_dir: str | None = None,
    ):
        super().__init__(key_source, max_line_bytes)
        self._window_fn = window_fn
        self._kinds = tuple(kinds)
        self._analyzer_config = analyzer_config
        self._spill_dir = spill_dir
        self._extract: ExtractTopicsFn | None = None

    def setup(self) -> None:
        super().setup()
        self._extract = ExtractTopicsFn(self._kinds, self._analyzer_config)
        self._extract.setup()

    def __getstate__(self) -> dict:
        # Set up, it holds the key (left behind by ParsePostsFn) and the analyzer,
        # which is built again where the copy is set up.
        return {**super().__getstate__(), "_extract": None}

    def process(self, piece: FileSlice) -> Iterable:
        parts: dict[tuple[int, int], WindowPosts] = {}
        edges = ChainEdges()
        if self._extract is None:
            self.setup()  # used directly, outside a runner
        window_fn, summary = self._window_fn, self._extract.summary
        for output in super().process(piece):
            if not isinstance(output, Post):
                yield output
                continue
            summarized = summary(output)
            bounds = window_bounds(window_fn, output.event_time_us)
            part = parts.get(bounds)
            if part is None:
                part = parts[bounds] = WindowPosts(self._spill_dir)
            add_post(part, summarized)
            edges.add(*chain_edge(summarized, output.event_time_us))
        yield from parts.items()
        if len(edges.ids):
            yield beam.pvalue.TaggedOutput(EDGES, edges)
