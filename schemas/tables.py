"""pyarrow schemas of every table the pipeline writes, in one place.

Each table is written as ``OUTPUT/<table>/date=YYYY-MM-DD/<file>.parquet``; the
``date`` column comes from the hive partition, so it is not stored in the files.
Columns of the contract (``docs/contract.md``) come first and keep their names and
types; the columns after them are this project's extensions.
"""

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


VOLUME = pa.schema(
    [
        _required("window_start", TIMESTAMP),
        _required("window_end", TIMESTAMP),
        _required("posts", pa.int64()),
        _required("participants", pa.int64()),
        # Extensions: reposts among the posts, redelivered copies dropped (so input
        # lines = sum(posts) + sum(duplicates) + dead letters), and the authors'
        # sketch, so participants over a day merge without double counting.
        _required("reposts", pa.int64()),
        _required("duplicates", pa.int64()),
        _required("participants_sketch", pa.binary()),
    ]
)

TOPICS = pa.schema(
    [
        _required("window_start", TIMESTAMP),
        _required("window_end", TIMESTAMP),
        _required("kind", pa.string()),
        _required("topic", pa.string()),
        _required("posts", pa.int64()),
        _required("participants", pa.int64()),
        _required("participants_sketch", pa.binary()),
        _required("reposts", pa.int64()),
    ]
)

BURSTS = pa.schema(
    [
        _required("kind", pa.string()),
        _required("topic", pa.string()),
        _required("window_start", TIMESTAMP),
        _required("window_end", TIMESTAMP),
        _required("posts", pa.int64()),
        _required("participants", pa.int64()),
        _required("expected", pa.float64()),
        _required("score", pa.float64()),
    ]
)

BURST_EPISODES = pa.schema(
    [
        _required("kind", pa.string()),
        _required("topic", pa.string()),
        # First bursting window's start, the start of the window with the most
        # participants, and the end of the last consecutive bursting window.
        _required("onset", TIMESTAMP),
        _required("peak_window_start", TIMESTAMP),
        _required("end", TIMESTAMP),
        _required("windows", pa.int64()),
        _required("peak_participants", pa.int64()),
        _required("peak_score", pa.float64()),
        _required("posts", pa.int64()),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        _required("raw", pa.string()),
        _required("error", pa.string()),
        _required("source", pa.string()),
        # Extensions: the step that rejected the line, and when it was read.
        _required("stage", pa.string()),
        _required("read_at", TIMESTAMP),
    ]
)

LATE_POSTS = pa.schema(
    [
        _required("window_start", TIMESTAMP),
        _required("window_end", TIMESTAMP),
        _required("posts", pa.int64()),
    ]
)

EVENT_TOPIC = pa.struct(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("participants", pa.int64(), nullable=False),
    ]
)
REPRESENTATIVE_POST = pa.struct(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        # Masked as at ingest, cut to its first 500 characters.
        pa.field("text", pa.string(), nullable=False),
        # Reposts of it counted within the event.
        pa.field("reposts", pa.int64(), nullable=False),
    ]
)

EVENTS = pa.schema(
    [
        _required("event_id", pa.string()),
        _required("onset", TIMESTAMP),
        _required("peak_window_start", TIMESTAMP),
        _required("end", TIMESTAMP),
        _required("label", pa.string()),
        _required("topics", pa.list_(EVENT_TOPIC)),
        _required("participants", pa.int64()),
        _required("posts", pa.int64()),
        _required("reposts", pa.int64()),
        _required("representative_posts", pa.list_(REPRESENTATIVE_POST)),
        # Extensions: the label's kind, the bursting windows, the people of the
        # peak window, and the people's sketch (to merge events over a week).
        _required("label_kind", pa.string()),
        _required("windows", pa.int64()),
        _required("peak_participants", pa.int64()),
        _required("participants_sketch", pa.binary()),
    ]
)

# Streaming: the events still open (that a later burst may join) as of the end of
# the last window judged, each as it stands, rewritten as a whole snapshot whenever
# they change; the latest snapshot is the one with the largest ``as_of``.
OPEN_EVENTS = pa.schema([*EVENTS, _required("as_of", TIMESTAMP)])

# One row per event and window it bursts in: its timeline.
EVENT_WINDOWS = pa.schema(
    [
        _required("event_id", pa.string()),
        _required("window_start", TIMESTAMP),
        _required("window_end", TIMESTAMP),
        _required("participants", pa.int64()),
        _required("posts", pa.int64()),
        _required("reposts", pa.int64()),
        # The event's topics bursting in the window.
        _required("topics", pa.int64()),
    ]
)

# Table name -> schema; the writer takes every table's schema from here.
TABLES: dict[str, pa.Schema] = {
    "volume": VOLUME,
    "topics": TOPICS,
    "bursts": BURSTS,
    "burst_episodes": BURST_EPISODES,
    "dead_letters": DEAD_LETTERS,
    "late_posts": LATE_POSTS,
    "events": EVENTS,
    "event_windows": EVENT_WINDOWS,
    "open_events": OPEN_EVENTS,
}

# Not written: each window's topics' top carriers, the posts whose spread carried a
# topic most (``post_key``: ``transforms.aggregate.post_id_key`` of the post id),
# with the posts and reposts of the topic in the window each carried. The events
# are assembled from it (``transforms.events``).
TOP_CARRIERS_NAME = "top_carriers"
TOP_CARRIERS = pa.schema(
    [
        _required("window_start", TIMESTAMP),
        _required("kind", pa.string()),
        _required("topic", pa.string()),
        _required("post_key", pa.int64()),
        _required("posts", pa.int64()),
        _required("reposts", pa.int64()),
    ]
)

# Beside the tables in the output folder: what the run was (window, timezone,
# sketch precision, detector settings), as JSON, for readers that must know.
RUN_MANIFEST = "_run.json"
# On an object store: the pointer naming the published run, and the folder of the
# run folders (``transforms.object_store``).
CURRENT_POINTER = "_current.json"
RUNS_FOLDER = "runs"

# A streaming run writes each pane of a window as a new file whose name ends in
# "-pane<NNNNNN>.parquet"; the highest pane of a window is its latest result (files
# without the suffix count as pane 0). The capture group is the pane number.
PANE_OF_PATH_PATTERN = r"-pane(\d+)\.parquet$"
# A table that is a whole state (``open_events``) is written as snapshots,
# "<as of>-snapshot.parquet"; the latest is the table.
SNAPSHOT_SUFFIX = "-snapshot.parquet"
