"""notebooks/hot_topics.ipynb runs top to bottom on the pipeline's output of a small
generated stream, as a user runs it after ./run_local.sh."""

import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT
from tests.test_reports_fixture import pipeline_sample

NOTEBOOK = PROJECT / "notebooks" / "hot_topics.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):

    out = pipeline_sample(tmp_path_factory)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    previous = os.environ.get("YUQING_OUTPUT")
    os.environ["YUQING_OUTPUT"] = str(out)  # the kernel inherits the environment
    try:
        # Any cell that raises fails the test here (CellExecutionError).
        NotebookClient(
            notebook,
            timeout=180,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        ).execute()
    finally:
        if previous is None:
            os.environ.pop("YUQING_OUTPUT")
        else:
            os.environ["YUQING_OUTPUT"] = previous
    return notebook


def _outputs(notebook):
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]


def test_notebook_runs_and_shows_tables_and_charts(executed):
    outputs = _outputs(executed)
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    # events' timelines, top topics, timeline, burst episodes, volume
    assert len(images) == 5
    tables = [
        output["data"]["text/html"]
        for output in outputs
        if "text/html" in output.get("data", {})
    ]
    events_table, hot_table = tables[0], tables[1]
    assert "雅安地震" in events_table and "representative_posts" in events_table
    assert "每小时打卡" in hot_table and "雅安地震" in hot_table


def test_notebook_reports_the_last_whole_day_with_merged_participants(executed):
    text = "".join(
        output.get("text", "")
        for output in _outputs(executed)
        if output.output_type == "stream"
    )
    assert "Report day: 2026-11-21 (Asia/Shanghai); compared with 2026-11-20" in text
    assert re.search(
        r"distinct people on 2026-11-21; "
        r"adding up the windows' participants would claim [\d,]+\.",
        text,
    )
    assert "missing from font" not in text and "Glyph" not in text
