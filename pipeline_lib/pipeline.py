"""A pipeline's configuration: source, transforms, sinks, checkpoint and trigger, validated.

:func:`load_pipeline_config` merges the YAML file, the environment and the flags
(``pipeline_lib.config``) and validates every section with the model of the layer that owns it.
It is pure: it reads the YAML file it is given and nothing else, touches no folder, starts no
JVM and asks no broker. What only the world can tell (the topic exists, a folder is not a file,
a transform's SQL fits the rows) is checked by the plan (``pipeline_lib.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pydantic import PositiveInt

from pipeline_lib.config import Settings, parse, read_layers, require
from pipeline_lib.errors import ConfigError
from pipeline_lib.kafka_client import KAFKA_ENVIRONMENT, KafkaSettings
from pipeline_lib.schema import PROCESSED_COLUMNS
from pipeline_lib.sinks import Sink, build_sink
from pipeline_lib.sources import Source, build_source
from pipeline_lib.steps import Step
from pipeline_lib.transforms import DEFAULT_MAX_PAYLOAD_BYTES, PARSE_STAGE, UnknownTransformError, get_transform
from pipeline_lib.triggers import runs_until_stopped, spark_trigger

OUTPUT = "output"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TransformSpec:
    """A transform as the configuration names it: a registered name and its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Step:
        return get_transform(self.name, **self.options)


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

    @property
    def sinks(self) -> Dict[str, Sink]:
        return {OUTPUT: self.output, QUARANTINE: self.quarantine}


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


DEFAULT_OUTPUT = {"format": "csv", "path": "output", "columns": list(PROCESSED_COLUMNS)}
DEFAULT_QUARANTINE = {"format": "json", "path": "quarantine"}


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
    output = build_sink(sections.output, OUTPUT, DEFAULT_OUTPUT, kafka)
    quarantine = build_sink(sections.quarantine, QUARANTINE, DEFAULT_QUARANTINE, kafka)
    require(
        quarantine.format != "csv",
        "quarantine.format",
        "must not be csv: payloads could become spreadsheet formulas; use json or parquet",
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
    )


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
