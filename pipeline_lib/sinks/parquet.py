"""The Parquet sink: typed columns, compressed."""

from __future__ import annotations

from pipeline_lib.sinks.base import register_sink
from pipeline_lib.sinks.files import FileSink


@register_sink("parquet")
class ParquetSink(FileSink):
    pass
