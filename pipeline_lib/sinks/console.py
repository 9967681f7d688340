"""The console sink: each micro-batch printed as a table, for trying things out."""

from __future__ import annotations

from pydantic import PositiveInt
from pyspark.sql import DataFrame

from pipeline_lib.sinks.base import RowCount, Sink, SinkOptions, register_sink


class ConsoleSinkOptions(SinkOptions):
    rows: PositiveInt = 20  # rows shown per batch


@register_sink("console")
class ConsoleSink(Sink):
    Options = ConsoleSinkOptions
    options: ConsoleSinkOptions

    def write(self, df: DataFrame, batch_id: int, rows: RowCount) -> int:
        df.show(self.options.rows, truncate=False)
        return rows()
