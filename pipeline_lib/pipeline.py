"""A pipeline's configuration: source, transforms, sinks, checkpoint and trigger, validated.

:func:`load_pipeline_config` merges the YAML file, the environment and the flags
(``pipeline_lib.config``) and validates every section with the model of the layer that owns it.
It is pure: it reads the YAML file it is given and nothing else, touches no folder, starts no
JVM and asks no broker. What only the world can tell (the topic exists, a folder is not a file,
a transform's SQL fits the rows) is checked by the plan (``pipeline_lib.plan``).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pydantic import PositiveInt, field_validator
from pyspark.sql.types import StructType

from pipeline_lib.config import Settings, comma_separated, parse, read_layers, require
from pipeline_lib.errors import ConfigError
from pipeline_lib.kafka_client import KAFKA_ENVIRONMENT, KafkaSettings
from pipeline_lib.schema import PROCESSED_COLUMNS, RECORD_SCHEMA, REQUIRED_FIELDS, schema_field_names
from pipeline_lib.sinks import Sink, build_sink
from pipeline_lib.sinks.kafka import KafkaSink
from pipeline_lib.sources import Source, build_source
from pipeline_lib.steps import Step, as_step
from pipeline_lib.transforms import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MARKER_COLUMNS,
    PARSE_STAGE,
    TRANSFORMS,
    Transform,
    UnknownTransformError,
    get_transform,
    parse_json,
)
from pipeline_lib.triggers import runs_until_stopped, spark_trigger

OUTPUT = "output"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TransformSpec:
    """A transform as the configuration names it: a registered name and its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self, schema: Optional[StructType] = None) -> Step:
        """The step; a factory with a ``schema`` option that the configuration leaves unset (an
        expectation's, for the payload of a row it quarantines) is given the record ``schema``."""
        if schema is None or "schema" in self.options or "schema" not in _parameters(self.name):
            return get_transform(self.name, **self.options)
        return as_step(get_transform(self.name, **self.options, schema=schema), self.name, self.options)


def _parameters(name: str) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(TRANSFORMS.get(name)).parameters


@dataclass(frozen=True)
class PipelineConfig:
    """Everything ``jobs/stream.py`` needs, validated: a source, the transforms of the valid
    rows, the output and quarantine sinks, one checkpoint and the trigger."""

    kafka: KafkaSettings
    source: Source
    transforms: Tuple[TransformSpec, ...]
    output: Sink
    quarantine: Sink
    checkpoint: str
    trigger: str
    max_payload_bytes: int
    app_name: str
    schema: Optional[str] = None  # the record schema in Spark's DDL; None: the seed's
    required: Tuple[str, ...] = REQUIRED_FIELDS

    @property
    def sinks(self) -> Dict[str, Sink]:
        return {OUTPUT: self.output, QUARANTINE: self.quarantine}

    def parse(self, schema: StructType) -> Transform:
        """The parse stage: :func:`parse_json` of ``schema`` (the record schema) with this
        configuration's required fields and payload limit."""
        return parse_json(schema, required=self.required, max_bytes=self.max_payload_bytes)


with warnings.catch_warnings():
    # ``schema`` shadows BaseModel.schema, pydantic v1's deprecated method, which nothing calls;
    # the setting keeps the name a user writes.
    warnings.filterwarnings("ignore", 'Field name "schema"', UserWarning)

    class _Sections(Settings):
        """The top level of a pipeline configuration; each section is validated by its owner."""

        kafka: Dict[str, Any] = {}
        source: Dict[str, Any] = {}
        transforms: List[Any] = [{"name": "add_processed_value"}]
        output: Dict[str, Any] = {}
        quarantine: Dict[str, Any] = {}
        checkpoint: str = "checkpoint"
        trigger: str = "available-now"
        max_payload_bytes: PositiveInt = DEFAULT_MAX_PAYLOAD_BYTES
        app_name: str = "simple-data-pipeline"
        schema: Optional[str] = None  # type: ignore[assignment]  # the shadowing above
        required: Optional[List[str]] = None

        @field_validator("required", mode="before")
        @classmethod
        def _comma_separated(cls, value: Any) -> Any:
            return comma_separated(value)


# A rejected row has no id: where it was read keys it on a topic, the same key when it is sent again.
DEFAULT_QUARANTINE = {"format": "json", "path": "quarantine", "key": ["topic", "partition", "offset"]}


def load_pipeline_config(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> PipelineConfig:
    """Read, merge and validate the stream job's configuration (see ``pipeline_lib.config``).

    >>> load_pipeline_config(overrides={"trigger": "processing-time=5s"}).trigger
    'processing-time=5s'
    """
    sections = parse(_Sections, read_layers(path, overrides, environ, KAFKA_ENVIRONMENT))
    kafka = parse(KafkaSettings, sections.kafka, "kafka")
    source = build_source(sections.source, kafka)
    required = _required(sections.schema, sections.required)
    # The seed's columns are its own; a user's schema writes its fields and what the transforms
    # add, which the plan tells.
    output_defaults: Dict[str, Any] = {"format": "csv", "path": "output"}
    if not sections.schema:
        output_defaults["columns"] = [*PROCESSED_COLUMNS, *source.output_columns]
    output = build_sink(sections.output, OUTPUT, output_defaults, kafka)
    quarantine = build_sink(sections.quarantine, QUARANTINE, DEFAULT_QUARANTINE, kafka)
    require(
        quarantine.format != "csv",
        "quarantine.format",
        "must not be csv: payloads could become spreadsheet formulas; use json or parquet, or kafka (a topic)",
    )
    if isinstance(quarantine, KafkaSink):
        if source.uses_kafka:
            require(
                quarantine.options.topic != kafka.topic,
                "quarantine.topic",
                f"must differ from the topic read ({kafka.topic}): rejected records would be read again",
            )
        if isinstance(output, KafkaSink):
            require(
                quarantine.options.topic != output.options.topic,
                "quarantine.topic",
                "must differ from output.topic: valid and rejected records would mix on one topic",
            )
    if output.location and quarantine.location:
        require(
            output.location.rstrip("/") != quarantine.location.rstrip("/"),
            "quarantine.path",
            "must differ from output.path: each sink owns its folder",
        )
    require(bool(sections.checkpoint), "checkpoint", "is required")
    spark_trigger(sections.trigger)
    require(
        source.finite or runs_until_stopped(sections.trigger),
        "trigger",
        f"the {source.describe()} source never runs dry; use processing-time=<interval> with it",
    )
    return PipelineConfig(
        kafka=kafka,
        source=source,
        transforms=_transform_specs(sections.transforms),
        output=output,
        quarantine=quarantine,
        checkpoint=sections.checkpoint,
        trigger=sections.trigger,
        max_payload_bytes=sections.max_payload_bytes,
        app_name=sections.app_name,
        schema=sections.schema,
        required=required,
    )


def _required(schema: Optional[str], required: Optional[List[str]]) -> Tuple[str, ...]:
    """The required fields, checked against the schema's names; by default the seed's ``id`` and
    ``value``, and none of a user's schema (a field absent or null is then accepted, as null)."""
    if schema is None:
        fields: Tuple[str, ...] = tuple(RECORD_SCHEMA.fieldNames())
    else:
        try:
            fields = schema_field_names(schema)
        except ValueError as error:
            raise ConfigError("schema", str(error)) from error
        clashes = [name for name in fields if name in MARKER_COLUMNS]
        require(not clashes, "schema", f"fields {clashes} are names the parse stage uses for its marks")
    names = tuple(required) if required is not None else REQUIRED_FIELDS if schema is None else ()
    unknown = [name for name in names if name not in fields]
    require(not unknown, "required", f"fields {unknown} are not in the schema; its fields: {', '.join(fields)}")
    return names


def _transform_specs(items: List[Any]) -> Tuple[TransformSpec, ...]:
    specs = []
    for index, item in enumerate(items):
        where = f"transforms[{index}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or set(item) - {"name", "options"} or "name" not in item:
            raise ConfigError(where, "must be a name or a mapping with 'name' and optional 'options'")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.options", "must be a mapping")
        spec = TransformSpec(str(item["name"]), dict(options))
        require(
            spec.name not in PARSE_STAGE,
            where,
            f"{spec.name} is part of the parse stage, which always runs first; list only transforms of the valid rows",
        )
        # Building a transform is pure (its factory checks its options and returns a closure):
        # an unknown name or a bad option stops here, naming the position.
        try:
            spec.build()
        except (UnknownTransformError, TypeError, ValueError) as error:
            raise ConfigError(where, str(error)) from error
        specs.append(spec)
    return tuple(specs)
