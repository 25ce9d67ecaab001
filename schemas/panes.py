"""What a streaming run records about each pane file, shared by its writer
(``transforms.rolling``) and its readers (``reports.panes``).

A pane file's name ends in ``-pane<NNNNNN>.parquet``
(``schemas.tables.PANE_OF_PATH_PATTERN``); its Parquet key-value metadata holds the
pane's index and timing under these keys.
"""

PANE_INDEX_KEY = b"yuqing.pane_index"
PANE_TIMING_KEY = b"yuqing.pane_timing"
