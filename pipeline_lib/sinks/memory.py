"""The memory sink: the rows written so far as a temporary view, for tests and notebooks.

Each micro-batch is collected to the driver and kept with those before it, in this process
only, and the view ``name`` is replaced by all of them: read it with ``spark.table(name)`` in
the session that runs the query. Its ledger lives in the process too, so a replayed batch is
not added twice while the process lives; a new process starts empty (use a file sink to keep
rows).
"""

from __future__ import annotations

import re
import threading
from typing import ClassVar, Dict, List, Tuple

from pydantic import field_validator
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.types import StructType

from pipeline_lib.sinks.base import Sink, SinkOptions, register_sink
from pipeline_lib.sinks.ledger import MemoryLedger


class MemorySinkOptions(SinkOptions):
    name: str = "pipeline_output"  # the view to read with spark.table

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is None:
            raise ValueError(f"{value!r} is not a view name (letters, digits, '_')")
        return value


@register_sink("memory")
class MemorySink(Sink):
    Options = MemorySinkOptions
    options: MemorySinkOptions

    # Per view name: the rows committed so far, and the batches written but not yet committed.
    _tables: ClassVar[Dict[str, List[Row]]] = {}
    _staged: ClassVar[Dict[Tuple[str, int], Tuple[List[Row], StructType]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def describe(self) -> str:
        return f"memory table {self.options.name}"

    def write(self, rows: DataFrame, batch_id: int) -> None:
        collected = rows.collect()
        with self._lock:
            self._staged[(self.options.name, batch_id)] = (collected, rows.schema)

    def commit(self, spark: SparkSession, batch_id: int, row_count: int) -> None:
        with self._lock:
            staged = self._staged.pop((self.options.name, batch_id), None)
            if staged is None:
                return
            kept = self._tables.setdefault(self.options.name, [])
            kept.extend(staged[0])
            snapshot = list(kept)
        # The query hands each batch to a copy of the session, whose views the user never sees:
        # the view goes to the session the job or notebook built.
        session = SparkSession.builder.getOrCreate()
        session.createDataFrame(snapshot, staged[1]).createOrReplaceTempView(self.options.name)

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.table(self.options.name)

    @classmethod
    def clear(cls, name: str) -> None:
        """Forget the rows and batches of view ``name`` (a test or notebook starting over)."""
        with cls._lock:
            cls._tables.pop(name, None)
        MemoryLedger.forget(f"memory table {name}")
