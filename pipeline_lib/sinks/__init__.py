"""Sinks by format name: ``csv``, ``json``, ``parquet``, ``console``, ``kafka``, ``memory``, and those
of plugins."""

from pipeline_lib.sinks import console, csv, json, kafka, memory, parquet  # noqa: F401  (each registers itself)
from pipeline_lib.sinks.base import (
    SINKS,
    CheckpointMismatchError,
    Sink,
    SinkOptions,
    build_sink,
    claim_checkpoint,
    register_sink,
    spark_trigger,
)

__all__ = [
    "SINKS",
    "CheckpointMismatchError",
    "Sink",
    "SinkOptions",
    "build_sink",
    "claim_checkpoint",
    "register_sink",
    "spark_trigger",
]
