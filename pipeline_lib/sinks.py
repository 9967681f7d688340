"""Streaming sinks: each starts one query with a checkpoint that belongs to it alone.

The file sinks (csv, json, parquet) are exactly-once: Spark records every committed batch in the
output folder's ``_spark_metadata`` log, and readers going through ``spark.read`` see only
committed files. A restart with the same checkpoint resumes after the last committed batch.
Sinks know nothing of transforms.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipeline_lib.config import SinkConfig

SINK_LOG = "_spark_metadata"
OWNER_FILE = "pipeline-owner.json"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint and an output folder that do not belong together."""


def start_sink(
    df: DataFrame, sink: SinkConfig, checkpoint: str, trigger: Dict[str, Any], query_name: str
) -> StreamingQuery:
    """Start writing ``df`` to ``sink`` with its own ``checkpoint`` folder.

    >>> start_sink(df, SinkConfig(format="csv", path="out"), "chk/output",
    ...            {"availableNow": True}, "output").awaitTermination()  # doctest: +SKIP
    """
    writer = df.writeStream.queryName(query_name).trigger(**trigger).outputMode("append")
    if sink.format == "console":
        return writer.format("console").option("truncate", "false").start()
    claim_checkpoint(checkpoint, sink.path)
    writer = writer.format(sink.format).option("checkpointLocation", checkpoint)
    if sink.format == "csv":
        writer = writer.option("header", "true")
    return writer.start(sink.path)


def claim_checkpoint(checkpoint: str, output: str) -> None:
    """Bind ``checkpoint`` to ``output``, refusing a pair that was not written together.

    A file sink trusts its checkpoint: with the output deleted it would go on from the
    checkpoint's offsets and the old rows would be lost silently; with a new checkpoint on an
    old output it would skip the batch ids already in the output's log. Both are refused here,
    as is a checkpoint recorded for another output folder.
    """
    if not _is_local(checkpoint, output):
        return  # only local folders can be inspected here
    owner_path = os.path.join(checkpoint, OWNER_FILE)
    output = os.path.abspath(output)
    # The order of a batch: offsets log, output files, sink log, commit log. A crash can stop
    # between any two; only a state that no crash leaves is refused.
    planned = _has_entries(os.path.join(checkpoint, "offsets"))
    committed = _has_entries(os.path.join(checkpoint, "commits"))
    logged = _has_entries(os.path.join(output, SINK_LOG))
    if os.path.exists(owner_path):
        with open(owner_path, encoding="utf-8") as handle:
            owner = json.load(handle).get("output")
        if owner != output:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} belongs to the query writing {owner}, not {output}; "
                "use that output folder or a new checkpoint"
            )
    if committed and not logged:
        raise CheckpointMismatchError(
            f"output {output} has no {SINK_LOG} log but checkpoint {checkpoint} has committed "
            "batches: the output was deleted or moved; restore it, or start over with a new "
            "checkpoint and an empty output"
        )
    if logged and not planned:
        raise CheckpointMismatchError(
            f"output {output} already holds committed batches but checkpoint {checkpoint} is new: "
            "give the checkpoint that wrote them, or a new output folder"
        )
    os.makedirs(checkpoint, exist_ok=True)
    with open(owner_path, "w", encoding="utf-8") as handle:
        json.dump({"output": output}, handle)


def _is_local(*paths: str) -> bool:
    return all("://" not in path for path in paths)


def _has_entries(folder: str) -> bool:
    return os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))


def read_output(spark: SparkSession, sink: SinkConfig) -> DataFrame:
    """Read back what a file sink committed (``spark.read`` honours the sink log).

    >>> read_output(spark, SinkConfig(format="csv", path="out")).count()  # doctest: +SKIP
    20
    """
    reader = spark.read.format(sink.format)
    if sink.format == "csv":
        reader = reader.option("header", "true").option("inferSchema", "true")
    return reader.load(sink.path)
