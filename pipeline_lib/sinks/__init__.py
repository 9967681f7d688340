"""Sinks by format name: ``csv``, ``json``, ``parquet``, ``console``, ``kafka``, ``memory``, and
those of plugins."""

from pipeline_lib.sinks import console, csv, json, kafka, memory, parquet  # noqa: F401  (each registers itself)
from pipeline_lib.sinks.base import SINKS, Sink, SinkOptions, build_sink, register_sink
from pipeline_lib.sinks.ledger import BatchLedger, FolderLedger, MemoryLedger, ledger_for

__all__ = [
    "SINKS",
    "BatchLedger",
    "FolderLedger",
    "MemoryLedger",
    "Sink",
    "SinkOptions",
    "build_sink",
    "ledger_for",
    "register_sink",
]
