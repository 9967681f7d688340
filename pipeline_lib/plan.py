"""The plan: a configuration checked against the world and built into what the run executes.

Making the plan checks that the sinks' folders and the checkpoint are folders, builds each
configured transform once as a typed step, applies the steps to the schema of the rows where
one of them needs Spark to check its options or keeps state, asks the source once whether it
can be read (the broker answers, the topic exists), and tells whether the checkpoint is new or
goes on with these sinks. It writes nothing and starts no query: ``jobs/stream.py --dry-run``
prints it and stops. Spark Declarative Pipelines' ``spark-pipelines dry-run`` is the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from pipeline_lib.checkpoint import inspect_checkpoint
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.pipeline import OUTPUT, QUARANTINE, PipelineConfig
from pipeline_lib.sinks import Sink
from pipeline_lib.steps import Step
from pipeline_lib.transforms import ERROR_COLUMN, parse_json, valid_records
from pipeline_lib.triggers import spark_trigger


@dataclass(frozen=True)
class Query:
    """One streaming query of the plan: its name, checkpoint and the sinks it writes."""

    name: str
    checkpoint: str
    sinks: Tuple[str, ...]
    checkpoint_state: str  # checkpoint.NEW or checkpoint.RESUMED


@dataclass(frozen=True)
class Plan:
    """What a run executes: the configuration, its transforms built as steps, its queries."""

    config: PipelineConfig
    steps: Tuple[Step, ...]
    queries: Tuple[Query, ...]

    @property
    def stateful(self) -> bool:
        """Whether a step keeps state across micro-batches: the steps then run on the stream,
        in one query per sink."""
        return any(step.stateful for step in self.steps)

    @property
    def keeps_rows(self) -> bool:
        """Whether every step keeps every row, so the output's count is the parse's."""
        return all(step.keeps_rows for step in self.steps)

    @property
    def sinks(self) -> Dict[str, Sink]:
        return self.config.sinks

    @property
    def trigger(self) -> Dict[str, Any]:
        return spark_trigger(self.config.trigger)

    def lines(self) -> List[str]:
        """The plan as ``--dry-run`` prints it."""
        config = self.config
        lines = [
            f"pipeline {config.app_name}",
            f"  source: {config.source.describe()} ({_options(config.source.options)})",
            f"  parse: JSON payloads of at most {config.max_payload_bytes} bytes; rejects to {QUARANTINE}",
            "  transforms:" if self.steps else "  transforms: none",
        ]
        for index, step in enumerate(self.steps, 1):
            traits = [
                trait
                for trait, present in (
                    ("keeps rows", step.keeps_rows),
                    ("keeps state", step.stateful),
                    ("checked on the schema", step.checked_on_schema),
                    ("counted", step.metrics is not None),
                )
                if present
            ]
            lines.append(f"    {index}. {step.describe()}" + (f"  [{', '.join(traits)}]" if traits else ""))
        for name, sink in self.sinks.items():
            columns = f" (columns {', '.join(sink.options.columns)})" if sink.options.columns else ""
            lines.append(f"  {name}: {sink.describe()}{columns}")
        for query in self.queries:
            bound = "new" if query.checkpoint_state == "new" else f"resumed, bound to {', '.join(query.sinks)}"
            label = f"checkpoint of {query.name}" if len(self.queries) > 1 else "checkpoint"
            lines.append(f"  {label}: {query.checkpoint} ({bound})")
        queries = "one query" if len(self.queries) == 1 else f"{len(self.queries)} queries (a step keeps state)"
        lines.append(f"  trigger: {config.trigger}; {queries}")
        return lines


def make_plan(config: PipelineConfig, spark: Optional[SparkSession] = None) -> Plan:
    """Check ``config`` against the world and build its plan. A bad setting is a
    :class:`ConfigError` naming it; a source that cannot be read, or a checkpoint bound to other
    folders, the error saying so. ``spark`` (or the active session, or a new one) is started
    only when a step must be checked on the rows' schema.
    """
    _check_folders(config)
    steps = tuple(_built(index, spec) for index, spec in enumerate(config.transforms))
    # Settings first, the world after: a bad option is named even when the broker is down.
    if any(step.checked_on_schema or step.stateful for step in steps):
        _check_on_schema(config, steps, spark)
    config.source.check()
    stateful = any(step.stateful for step in steps)
    # A stateful plan runs a query per sink, each with a checkpoint of its own under the one given.
    groups: List[Tuple[str, str, Tuple[str, ...]]] = (
        [(name, os.path.join(config.checkpoint, name), (name,)) for name in (OUTPUT, QUARANTINE)]
        if stateful
        else [(config.app_name, config.checkpoint, (OUTPUT, QUARANTINE))]
    )
    queries = tuple(
        Query(name, path, sinks, inspect_checkpoint(path, {sink: config.sinks[sink].location for sink in sinks}))
        for name, path, sinks in groups
    )
    return Plan(config, steps, queries)


def _built(index: int, spec) -> Step:
    try:
        return spec.build()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"transforms[{index}]", str(error)) from error


def _check_folders(config: PipelineConfig) -> None:
    for name, sink in config.sinks.items():
        if sink.location and os.path.isfile(sink.location):
            raise ConfigError(f"{name}.path", f"{sink.location} is a file, not a folder")
    if os.path.isfile(config.checkpoint):
        raise ConfigError("checkpoint", f"{config.checkpoint} is a file, not a folder")


def _check_on_schema(config: PipelineConfig, steps: Tuple[Step, ...], spark: Optional[SparkSession]) -> None:
    """Apply the steps to the schema of the source's valid rows: a bad option (SQL that does not
    parse, a column the rows lack) is then a :class:`ConfigError` naming the transform."""
    if spark is None:
        from pipeline_lib.session import get_spark

        spark = SparkSession.getActiveSession() or get_spark(config.app_name)
    try:
        rows = config.source.read_stream(spark).transform(parse_json()).transform(valid_records())
    except (PySparkException, PipelineError) as error:
        raise ConfigError("source", str(error).splitlines()[0]) from error
    stateful = any(step.stateful for step in steps)
    for index, step in enumerate(steps):
        try:
            rows = rows.transform(step)
        except (PySparkException, ValueError, TypeError) as error:
            raise ConfigError(f"transforms[{index}]", str(error).splitlines()[0]) from error
        # A stateful pipeline writes its transformed rows as they come out of the state: rows
        # marked for the quarantine on the way would not be told apart there.
        if stateful and ERROR_COLUMN in rows.columns:
            raise ConfigError(
                f"transforms[{index}]",
                "a pipeline with a stateful transform cannot quarantine rows in its transforms; "
                "use on_violation drop or warn",
            )


def _options(options) -> str:
    values = options.model_dump(exclude_defaults=False)
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "no options"
