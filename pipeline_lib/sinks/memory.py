"""The memory sink: the rows written so far as a temporary view, for tests and notebooks.

Each micro-batch is collected to the driver and kept with those before it, in this process
only, and the view ``name`` is replaced by all of them: read it with ``spark.table(name)`` in
the session that runs the query. A batch id is taken once, so a replayed batch is not added
twice while the process lives; a new process starts empty (use a file sink to keep rows).
"""

from __future__ import annotations

import re
import threading
from typing import ClassVar, Dict, List, Set, Tuple

from pydantic import field_validator
from pyspark.sql import DataFrame, Row, SparkSession

from pipeline_lib.sinks.base import RowCount, Sink, SinkOptions, register_sink


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

    # Per view name: the batch ids taken and the rows, shared by every sink of this process.
    _tables: ClassVar[Dict[str, Tuple[Set[int], List[Row]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def describe(self) -> str:
        return f"memory table {self.options.name}"

    def written(self, spark: SparkSession, batch_id: int) -> bool:
        with self._lock:
            return batch_id in self._tables.get(self.options.name, (set(), []))[0]

    def write(self, df: DataFrame, batch_id: int, rows: RowCount) -> int:
        collected = df.collect()
        with self._lock:
            batches, kept = self._tables.setdefault(self.options.name, (set(), []))
            if batch_id not in batches:
                batches.add(batch_id)
                kept.extend(collected)
            snapshot = list(kept)
        # The query hands each batch to a copy of the session, whose views the user never sees:
        # the view goes to the session the job or notebook built.
        session = SparkSession.builder.getOrCreate()
        session.createDataFrame(snapshot, df.schema).createOrReplaceTempView(self.options.name)
        return len(collected)

    def skip_batch(self, batch_id: int) -> None:
        with self._lock:
            self._tables.setdefault(self.options.name, (set(), []))[0].add(batch_id)

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.table(self.options.name)

    @classmethod
    def clear(cls, name: str) -> None:
        """Forget the rows of view ``name`` (a test or notebook starting over)."""
        with cls._lock:
            cls._tables.pop(name, None)
