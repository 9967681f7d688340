"""The JSON-lines sink: one object per line, every column present (null where empty)."""

from __future__ import annotations

from typing import Mapping, Optional

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipeline_lib.sinks.base import register_sink
from pipeline_lib.sinks.files import FileSink, Line


@register_sink("json")
class JsonSink(FileSink):
    # Without it Spark leaves out null fields, and readers lose the column altogether.
    writer_options = {"ignoreNullFields": "false"}

    def line(self, columns: Mapping[str, Column], schema: StructType) -> Optional[Line]:
        if self.options.partition_by:
            return None
        return Line(F.to_json(F.struct(*[columns[name].alias(name) for name in schema.names]), self.writer_options))
