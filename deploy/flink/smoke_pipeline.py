"""A tiny Beam pipeline to check a portable runner end to end (word count).

It exercises what the real pipeline needs from Flink: a shuffle (GroupByKey), a file
write, and SDK workers that can import this project's packages (``--check_import``,
done in ``setup()`` on the worker, not at submission).

    deploy/flink/run.sh --smoke --input README.md --output /tmp/smoke/counts
    python deploy/flink/smoke_pipeline.py --input README.md --output /tmp/counts

The output is ``OUTPUT-00000-of-0000N`` text files of ``word<TAB>count`` lines.
"""

import argparse
import importlib
import logging
import re

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


class CheckImportFn(beam.DoFn):
    """Fails the bundle, on the worker, when a project module does not import.

    str -> str (elements pass through unchanged)
    """

    def __init__(self, module: str):
        self._module = module

    def setup(self) -> None:
        if self._module:
            try:
                importlib.import_module(self._module)
            except ImportError as err:
                raise RuntimeError(
                    f"SDK worker cannot import {self._module!r}: {err}. Start the "
                    "worker pool with cwd/PYTHONPATH at the project root, or ship "
                    "the project with --setup_file to a boot-enabled SDK container."
                ) from err

    def process(self, element: str):
        yield element


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="output file prefix")
    parser.add_argument(
        "--check_import",
        default="transforms",
        help="module the workers must import ('' to skip)",
    )
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        (
            pipeline
            | "ReadLines" >> beam.io.ReadFromText(args.input)
            | "CheckImport" >> beam.ParDo(CheckImportFn(args.check_import))
            | "SplitWords"
            >> beam.FlatMap(lambda line: re.findall(r"\w+", line.lower()))
            | "PairWithOne" >> beam.Map(lambda word: (word, 1))
            | "GroupWords" >> beam.GroupByKey()
            | "SumCounts" >> beam.MapTuple(lambda word, ones: f"{word}\t{sum(ones)}")
            | "WriteCounts" >> beam.io.WriteToText(args.output)
        )


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
