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
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Set, Tuple

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

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
        self._folder = HadoopFolder(spark, folder)

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


# Hadoop's Path and commons-io's IOUtils by JVM: a lookup costs a round trip to the JVM for each
# name of the package path, and a batch opens a dozen folders.
_CLASSES: "weakref.WeakKeyDictionary[Any, Tuple[Any, Any]]" = weakref.WeakKeyDictionary()


def _jvm_classes(spark: SparkSession) -> Tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a SparkContext with its JVM"
    if jvm not in _CLASSES:
        _CLASSES[jvm] = (jvm.org.apache.hadoop.fs.Path, jvm.org.apache.commons.io.IOUtils)
    return _CLASSES[jvm]


class HadoopFolder:
    """A folder through Hadoop's FileSystem API (the JVM's), names relative to it: local,
    ``hdfs://`` and ``s3a://`` folders alike."""

    def __init__(self, spark: SparkSession, location: str):
        self._path_class, self._io = _jvm_classes(spark)
        self.root = location if "://" in location else os.path.abspath(location)
        self._fs = self._path_class(self.root).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _hadoop(self, name: str):
        return self._path_class(self.path(name))

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._hadoop(name)))

    def names(self, pattern: str) -> List[str]:
        statuses = self._fs.globStatus(self._hadoop(pattern)) or []
        return [status.getPath().getName() for status in statuses]

    def delete(self, name: str) -> None:
        self._fs.delete(self._hadoop(name), True)

    def rename(self, source: str, target: str) -> None:
        if not self._fs.rename(self._hadoop(source), self._hadoop(target)):
            raise OSError(f"could not rename {self.path(source)} to {self.path(target)}")

    def move(self, source: str, folder: "HadoopFolder", target: str) -> None:
        """Rename ``source`` of this folder to ``target`` of ``folder``, on the same file system;
        OSError when it cannot (a rename across mount points of ``viewfs://`` throws)."""
        failure = f"could not rename {self.path(source)} to {folder.path(target)}"
        try:
            moved = self._fs.rename(self._hadoop(source), folder._hadoop(target))
        except Py4JJavaError as error:
            raise OSError(f"{failure}: {error.java_exception}") from error
        if not moved:
            raise OSError(failure)

    def touch(self, name: str) -> None:
        self._fs.create(self._hadoop(name), True).close()

    def write_lines(self, name: str, lines: List[str]) -> None:
        stream = self._fs.create(self._hadoop(name), True)
        try:
            stream.write(bytearray("".join(line + "\n" for line in lines), "utf-8"))
        finally:
            stream.close()

    def read_lines(self, name: str) -> List[str]:
        stream = self._fs.open(self._hadoop(name))
        try:
            text = self._io.toString(stream, "UTF-8")
        finally:
            stream.close()
        return [line for line in text.splitlines() if line]
