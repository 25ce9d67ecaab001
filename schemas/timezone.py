"""The timezone of date partitions, day windows and report periods when none is
given (the pipeline's ``--timezone``, the reports' ``--timezone``)."""

DEFAULT_TIMEZONE = "Asia/Shanghai"
