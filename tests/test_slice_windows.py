"""A file slice read, parsed and gathered per window in one step
(``transforms.slice_windows``) gives what the step-by-step path gives: the same
dead letters, the same window rows and the same chain edges."""

import datetime
import pickle

from apache_beam.transforms.window import FixedWindows

from schemas.records import Post
from tests.conftest import TEST_KEY_HEX, key_source_for_tests, post_line
from transforms.aggregate import add_post, aggregate_window, window_bounds
from transforms.extract import ExtractTopicsFn
from transforms.files import FileSlice
from transforms.read import ParseSlicesFn
from transforms.reposts import chain_edge
from transforms.slice_windows import EDGES, SummarizeSlicesFn
from transforms.topics import KIND_HASHTAG, KIND_MENTION
from transforms.window_posts import WindowPosts

KINDS = (KIND_HASHTAG, KIND_MENTION)
WINDOW = FixedWindows(3600)


def _slice(tmp_path) -> FileSlice:
    """Posts over three hours, reposts among them, a copy and two bad lines."""
    start = datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)
    lines = []
    for number in range(300):
        created = (start + datetime.timedelta(minutes=number)).isoformat()
        fields = {"created_at": created}
        if number % 3 == 0 and number:
            fields["repost_of"] = str(number - 3)
            fields["text"] = f"转发 @用户{number % 7}"
        lines.append(post_line(number, **fields))
    lines[50] = b"{not json\n"
    lines.append(lines[10])  # a redelivered copy
    lines.append(b'{"id": "x"}\n')
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"".join(lines))
    return FileSlice(str(path), 1, len(lines), 0, 0)


def _step_by_step(piece: FileSlice):
    """The separate steps: parse, extract, key by window, fold, edges."""
    parse = ParseSlicesFn(key_source_for_tests())
    extract = ExtractTopicsFn(KINDS)
    extract.setup()
    parts: dict[tuple[int, int], WindowPosts] = {}
    edges, letters = [], []
    for output in parse.process(piece):
        if not isinstance(output, Post):
            letters.append(output.value)
            continue
        summary = extract.summary(output)
        bounds = window_bounds(WINDOW, output.event_time_us)
        add_post(parts.setdefault(bounds, WindowPosts()), summary)
        edges.append(chain_edge(summary, output.event_time_us))
    return parts, edges, letters


def test_a_slice_gives_the_window_rows_edges_and_dead_letters_of_the_steps(tmp_path):
    piece = _slice(tmp_path)
    fused = SummarizeSlicesFn(key_source_for_tests(), 1 << 20, WINDOW, KINDS)
    fused.setup()
    outputs = list(fused.process(piece))
    parts = dict(output for output in outputs if isinstance(output, tuple))
    tagged = [output for output in outputs if hasattr(output, "tag")]
    (edges,) = [output.value for output in tagged if output.tag == EDGES]
    letters = [output.value for output in tagged if output.tag != EDGES]

    want_parts, want_edges, want_letters = _step_by_step(piece)
    assert sorted(parts) == sorted(want_parts) and len(parts) == 5
    for bounds, part in parts.items():
        assert aggregate_window(part, carriers_from=2) == aggregate_window(
            want_parts[bounds], carriers_from=2
        )
    assert list(zip(edges.ids, edges.times, strict=True)) == [
        (edge[0], edge[2]) for edge in want_edges
    ]
    assert sum(edges.is_repost) == 99
    assert [(letter.source, letter.error) for letter in letters] == [
        (letter.source, letter.error) for letter in want_letters
    ]
    assert len(letters) == 2 and len(edges.ids) == 300  # the copy included


def test_a_set_up_slice_step_pickles_without_its_key_or_analyzer():
    fused = SummarizeSlicesFn(key_source_for_tests(), 1 << 20, WINDOW, ("entity",))
    fused.setup()
    key = bytes.fromhex(TEST_KEY_HEX)
    assert fused.pseudonym_key() == key
    copy = pickle.loads(pickle.dumps(fused))
    assert copy._loaded_key is None and copy._extract is None
    assert key not in pickle.dumps(fused)
