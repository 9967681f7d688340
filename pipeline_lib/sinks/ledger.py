"""Which micro-batches a sink has written: the one record every sink shares.

The runner asks the ledger before it hands a batch to a sink, and marks the batch after the
sink committed it; a batch Spark replays after a crash (same id, same rows) is skipped by a sink
that marked it and written again by one that did not. A sink with a folder keeps its ledger in
the folder (``_batches/<id>``), so it survives the process; any other sink keeps one in memory,
for the life of the process.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Dict, Set

from pyspark.sql import SparkSession

from pipeline_lib.sinks.folders import Folder

if TYPE_CHECKING:
    from pipeline_lib.sinks.base import Sink

MARKS = "_batches"
# The newest marks are enough: a replay concerns the last planned batch only.
MARKS_KEPT = 100


class BatchLedger(ABC):
    """The batch ids a sink has written."""

    @abstractmethod
    def written(self, batch_id: int) -> bool:
        """Whether batch ``batch_id`` was committed by the sink."""

    @abstractmethod
    def mark(self, batch_id: int) -> None:
        """Record batch ``batch_id`` as committed."""


class FolderLedger(BatchLedger):
    """Marks as empty files ``<folder>/_batches/<id>``, the newest :data:`MARKS_KEPT` kept."""

    def __init__(self, spark: SparkSession, folder: str):
        self._folder = Folder(spark, folder)

    def written(self, batch_id: int) -> bool:
        return self._folder.exists(f"{MARKS}/{batch_id}")

    def mark(self, batch_id: int) -> None:
        self._folder.touch(f"{MARKS}/{batch_id}")
        # Batch ids follow one another, so one delete keeps the count bounded without a listing.
        self._folder.delete(f"{MARKS}/{batch_id - MARKS_KEPT}")

    @staticmethod
    def has_history(folder: str) -> bool:
        """Whether a local ``folder`` holds batches some checkpoint wrote (the ledger's marks, or
        the metadata of Spark's own file sink). Folders of other file systems are not inspected.

        >>> FolderLedger.has_history("/nonexistent")
        False
        """
        return "://" not in folder and any(
            os.path.isdir(path) and any(not name.startswith(".") for name in os.listdir(path))
            for path in (os.path.join(folder, MARKS), os.path.join(folder, "_spark_metadata"))
        )


class MemoryLedger(BatchLedger):
    """Marks kept in this process, by ``key`` (a sink's description), shared by its sinks."""

    _marks: ClassVar[Dict[str, Set[int]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: str):
        self.key = key

    def written(self, batch_id: int) -> bool:
        with self._lock:
            return batch_id in self._marks.get(self.key, set())

    def mark(self, batch_id: int) -> None:
        with self._lock:
            self._marks.setdefault(self.key, set()).add(batch_id)

    @classmethod
    def forget(cls, key: str) -> None:
        """Drop the marks of ``key`` (a notebook or test starting over)."""
        with cls._lock:
            cls._marks.pop(key, None)


def ledger_for(sink: "Sink", spark: SparkSession) -> BatchLedger:
    """The ledger of ``sink``: in its folder when it has one, else in memory."""
    return FolderLedger(spark, sink.location) if sink.location else MemoryLedger(sink.describe())
