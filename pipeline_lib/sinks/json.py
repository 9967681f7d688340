"""The JSON-lines sink: one object per line, every column present (null where empty)."""

from __future__ import annotations

from pipeline_lib.sinks.base import register_sink
from pipeline_lib.sinks.files import FileSink


@register_sink("json")
class JsonSink(FileSink):
    # Without it Spark leaves out null fields, and readers lose the column altogether.
    writer_options = {"ignoreNullFields": "false"}
