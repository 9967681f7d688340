"""A plugin of pipeline_lib: the transform ``clip_value`` and the sink ``row_log``.

Installed, it is found through its entry points (``pipeline_lib.transforms``,
``pipeline_lib.sinks``) the first time a configuration names them; nothing imports it by hand.
"""

from __future__ import annotations

import json
import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.sinks import Sink, SinkOptions, register_sink
from pipeline_lib.transforms import Transform, keeps_rows, register_transform


@register_transform("clip_value")
def clip_value(low: int = 0, high: int = 100, column: str = "value") -> Transform:
    """``column`` held within ``low..high``."""
    return keeps_rows(lambda df: df.withColumn(column, F.least(F.greatest(F.col(column), F.lit(low)), F.lit(high))))


class RowLogOptions(SinkOptions):
    path: str


@register_sink("row_log")
class RowLogSink(Sink):
    """Each micro-batch as one JSON-lines file, ``batch-<id>.jsonl``, written by the driver; a
    replayed batch replaces its file."""

    Options = RowLogOptions
    options: RowLogOptions

    @property
    def location(self) -> str:
        return self.options.path

    def write(self, rows: DataFrame, batch_id: int) -> None:
        lines = [json.dumps(row.asDict(), default=str) for row in rows.collect()]
        os.makedirs(self.options.path, exist_ok=True)
        partial = self._file(batch_id) + ".partial"
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        os.replace(partial, self._file(batch_id))

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.json(self.options.path)

    def _file(self, batch_id: int) -> str:
        return os.path.join(self.options.path, f"batch-{batch_id}.jsonl")
