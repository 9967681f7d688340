"""The console sink: each micro-batch printed as a table, for trying things out; numbers as the
CSV sink writes them (1715181600.123, not 1.715181600123E9)."""

from __future__ import annotations

from pydantic import PositiveInt
from pyspark.sql import DataFrame

from pipeline_lib.sinks.base import Sink, SinkOptions, register_sink
from pipeline_lib.sinks.csv import with_plain_decimals


class ConsoleSinkOptions(SinkOptions):
    rows: PositiveInt = 20  # rows shown per batch


@register_sink("console")
class ConsoleSink(Sink):
    Options = ConsoleSinkOptions
    options: ConsoleSinkOptions

    def write(self, rows: DataFrame, batch_id: int) -> None:
        rows.transform(with_plain_decimals).show(self.options.rows, truncate=False)
