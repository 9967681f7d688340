"""Pipeline and producer configuration: parsed and validated here, and nowhere else.

Precedence, lowest first: the dataclass defaults, a YAML file (``--config``), environment
variables (:data:`ENVIRONMENT`), command-line flags. Every problem raises :class:`ConfigError`
naming the field in dotted form (``output.format``) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from pipeline_lib.schema import PROCESSED_COLUMNS
from pipeline_lib.transforms import PARSE_STAGE, UnknownTransformError, get_transform


class ConfigError(ValueError):
    """A configuration value that cannot be used; ``field`` names it in dotted form."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SOURCE_TYPES = ("kafka", "files", "rate")
SINK_FORMATS = ("csv", "parquet", "json", "console")
FILE_SINK_FORMATS = ("csv", "parquet", "json")
STARTING_OFFSETS = ("earliest", "latest")

_BOOTSTRAP_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_TRIGGER = re.compile(r"^(available-now|once|processing-time=(\d+(?:\.\d+)?)\s*(ms|s|m|h))$")
_DURATION_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}


@dataclass(frozen=True)
class KafkaConfig:
    """Where the broker is and how to authenticate; shared by the producer and the Spark source."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "input-data"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[str] = field(default=None, repr=False)
    ssl_cafile: Optional[str] = None
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None

    def client_options(self) -> Dict[str, Any]:
        """Security settings for kafka-python's producer, consumer and admin clients."""
        options: Dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        return options

    def spark_options(self) -> Dict[str, str]:
        """The same settings as ``kafka.``-prefixed options of Spark's Kafka source."""
        options = {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            "kafka.security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            module = "plain.PlainLoginModule" if self.sasl_mechanism == "PLAIN" else "scram.ScramLoginModule"
            options["kafka.sasl.mechanism"] = self.sasl_mechanism
            options["kafka.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.{module} required "
                f'username="{self.sasl_username}" password="{self.sasl_password}";'
            )
        if self.ssl_cafile:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = self.ssl_cafile
        if self.ssl_certfile and self.ssl_keyfile:
            options["kafka.ssl.keystore.type"] = "PEM"
            options["kafka.ssl.keystore.location"] = self.ssl_certfile
        return options


@dataclass(frozen=True)
class SourceConfig:
    type: str = "kafka"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: Optional[int] = None
    fail_on_data_loss: bool = True
    connect_timeout: float = 30.0  # seconds to reach the broker before the queries start
    path: Optional[str] = None  # the files source: a folder of JSON-lines files
    rows_per_second: int = 10  # the rate source


@dataclass(frozen=True)
class SinkConfig:
    format: str = "csv"
    path: str = "output"
    columns: Optional[Tuple[str, ...]] = PROCESSED_COLUMNS  # None keeps every column


@dataclass(frozen=True)
class TransformSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything ``jobs/stream.py`` needs: source, transforms of the valid rows, two sinks."""

    kafka: KafkaConfig = KafkaConfig()
    source: SourceConfig = SourceConfig()
    transforms: Tuple[TransformSpec, ...] = (TransformSpec("add_processed_value"),)
    output: SinkConfig = SinkConfig()
    quarantine: SinkConfig = SinkConfig(format="json", path="quarantine", columns=None)
    checkpoint: str = "checkpoint"
    trigger: str = "available-now"
    max_payload_bytes: int = 256 * 1024
    app_name: str = "simple-data-pipeline"


@dataclass(frozen=True)
class ProducerConfig:
    """Everything ``jobs/produce.py`` needs."""

    kafka: KafkaConfig = KafkaConfig()
    count: int = 20
    rate: Optional[float] = None  # records per second; None sends as fast as acknowledged
    seed: Optional[int] = None
    start_id: int = 1
    partitions: int = 1
    timeout: float = 30.0  # seconds to reach the broker and to have every record acknowledged


# Environment variables, each naming a dotted field. Flags override them; they override the file.
ENVIRONMENT = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "KAFKA_TOPIC": "kafka.topic",
    "KAFKA_SECURITY_PROTOCOL": "kafka.security_protocol",
    "KAFKA_SASL_MECHANISM": "kafka.sasl_mechanism",
    "KAFKA_SASL_USERNAME": "kafka.sasl_username",
    "KAFKA_SASL_PASSWORD": "kafka.sasl_password",
    "KAFKA_SSL_CAFILE": "kafka.ssl_cafile",
    "KAFKA_SSL_CERTFILE": "kafka.ssl_certfile",
    "KAFKA_SSL_KEYFILE": "kafka.ssl_keyfile",
}


def load_pipeline_config(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> PipelineConfig:
    """Load, merge and validate the stream job's configuration.

    ``overrides`` maps dotted fields to values (``{"output.path": "/tmp/out"}``); a None value
    means "not given" so command-line defaults never mask the file.

    >>> load_pipeline_config(overrides={"trigger": "processing-time=5s"}).trigger
    'processing-time=5s'
    """
    config = _build(PipelineConfig(), _merged(path, overrides, environ), "")
    _validate_pipeline(config)
    return config


def load_producer_config(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> ProducerConfig:
    """Load, merge and validate the producer's configuration (same rules as the pipeline's).

    >>> load_producer_config(overrides={"count": 5}).count
    5
    """
    config = _build(ProducerConfig(), _merged(path, overrides, environ), "")
    _validate_kafka(config.kafka)
    _require(config.count >= 0, "count", f"must be 0 or more, got {config.count}")
    _require(config.rate is None or config.rate > 0, "rate", f"must be above 0, got {config.rate}")
    _require(config.start_id >= 0, "start_id", f"must be 0 or more, got {config.start_id}")
    _require(1 <= config.partitions <= 10000, "partitions", f"must be 1 to 10000, got {config.partitions}")
    _require(config.timeout > 0, "timeout", f"must be above 0 seconds, got {config.timeout}")
    return config


def spark_trigger(trigger: str) -> Dict[str, Any]:
    """Keyword arguments for ``DataStreamWriter.trigger`` from a validated trigger string.

    >>> spark_trigger("processing-time=5s")
    {'processingTime': '5 seconds'}
    """
    match = _TRIGGER.match(trigger)
    if match is None:
        raise ConfigError("trigger", f"unknown trigger {trigger!r}; {_TRIGGER_HELP}")
    if trigger == "available-now":
        return {"availableNow": True}
    if trigger == "once":
        return {"once": True}
    return {"processingTime": f"{match.group(2)} {_DURATION_WORDS[match.group(3)]}"}


_TRIGGER_HELP = "allowed: available-now, once, processing-time=<number><ms|s|m|h>"


def _merged(
    path: Optional[str], overrides: Optional[Mapping[str, Any]], environ: Optional[Mapping[str, str]]
) -> Dict[str, Any]:
    data: Dict[str, Any] = _read_yaml(path) if path else {}
    environ = os.environ if environ is None else environ
    layers = [{key: environ[var] for var, key in ENVIRONMENT.items() if environ.get(var)}, overrides or {}]
    for layer in layers:
        for dotted, value in layer.items():
            if value is None:
                continue
            *parents, leaf = dotted.split(".")
            node = data
            for parent in parents:
                node = node.setdefault(parent, {})
                if not isinstance(node, dict):
                    raise ConfigError(parent, "must be a mapping")
            node[leaf] = value
    return data


def _read_yaml(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError("config", f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError("config", f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping at the top level")
    return data


def _build(base: Any, data: Any, prefix: str) -> Any:
    """A copy of dataclass instance ``base`` with the fields in ``data``, each type-checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a mapping")
    hints = get_type_hints(type(base))
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown setting; allowed: {', '.join(hints)}")
    values = {name: _coerce(hints[name], getattr(base, name), value, f"{prefix}{name}") for name, value in data.items()}
    return dataclasses.replace(base, **values)


def _coerce(hint: Any, current: Any, value: Any, name: str) -> Any:
    """``value`` as the type ``hint`` names, or a :class:`ConfigError` naming the field."""
    if dataclasses.is_dataclass(current):
        return _build(current, value, f"{name}.")
    arguments = [argument for argument in get_args(hint) if argument is not type(None)]
    optional = get_origin(hint) is Union and type(None) in get_args(hint)
    if optional:
        if value is None:
            return None
        hint = arguments[0]
    if get_origin(hint) is tuple:
        return _transform_specs(value) if get_args(hint)[0] is TransformSpec else _column_names(value, name)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        try:
            if isinstance(value, bool) or (hint is int and isinstance(value, float)):
                raise ValueError
            return hint(value)
        except (TypeError, ValueError):
            kind = "a whole number" if hint is int else "a number"
            raise ConfigError(name, f"must be {kind}, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {value!r}")
    return value


def _column_names(value: Any, name: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ConfigError(name, f"must be a list of column names, got {value!r}")
    return tuple(value)


def _transform_specs(value: Any) -> Tuple[TransformSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError("transforms", "must be a list of names or {name, options} mappings")
    specs = []
    for index, item in enumerate(value):
        where = f"transforms[{index}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or set(item) - {"name", "options"} or "name" not in item:
            raise ConfigError(where, "must be a name or a mapping with 'name' and optional 'options'")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.options", "must be a mapping")
        specs.append(TransformSpec(str(item["name"]), dict(options)))
    return tuple(specs)


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ConfigError(field_name, message)


def _validate_kafka(kafka: KafkaConfig) -> None:
    addresses = kafka.bootstrap_servers.split(",")
    for address in addresses:
        match = _BOOTSTRAP_ADDRESS.match(address.strip())
        _require(
            match is not None and 0 < int(match.group(2)) < 65536,
            "kafka.bootstrap_servers",
            f"{address.strip()!r} is not host:port (port 1-65535); give a comma-separated list",
        )
    _require(
        re.fullmatch(r"[A-Za-z0-9._-]{1,249}", kafka.topic) is not None,
        "kafka.topic",
        f"{kafka.topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; 1-249 chars)",
    )
    _require(
        kafka.security_protocol in SECURITY_PROTOCOLS,
        "kafka.security_protocol",
        f"unknown protocol {kafka.security_protocol!r}; allowed: {', '.join(SECURITY_PROTOCOLS)}",
    )
    uses_sasl = kafka.security_protocol.startswith("SASL_")
    if uses_sasl:
        _require(
            kafka.sasl_mechanism in SASL_MECHANISMS,
            "kafka.sasl_mechanism",
            f"{kafka.sasl_mechanism!r} is not supported; allowed: {', '.join(SASL_MECHANISMS)}",
        )
        for name in ("sasl_username", "sasl_password"):
            _require(bool(getattr(kafka, name)), f"kafka.{name}", f"is required with {kafka.security_protocol}")
    else:
        _require(
            kafka.sasl_mechanism is None,
            "kafka.sasl_mechanism",
            f"needs security_protocol SASL_PLAINTEXT or SASL_SSL, not {kafka.security_protocol}",
        )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(kafka, name)
        _require(path is None or os.path.isfile(path), f"kafka.{name}", f"no such file: {path}")


def _validate_sink(sink: SinkConfig, name: str) -> None:
    _require(
        sink.format in SINK_FORMATS,
        f"{name}.format",
        f"unknown format {sink.format!r}; allowed: {', '.join(SINK_FORMATS)}",
    )
    if sink.format in FILE_SINK_FORMATS:
        _require(bool(sink.path), f"{name}.path", "is required for a file sink")
        _require(not os.path.isfile(sink.path), f"{name}.path", f"{sink.path} is a file, not a folder")


def _validate_pipeline(config: PipelineConfig) -> None:
    source = config.source
    _require(
        source.type in SOURCE_TYPES,
        "source.type",
        f"unknown source {source.type!r}; allowed: {', '.join(SOURCE_TYPES)}",
    )
    if source.type == "kafka":
        _validate_kafka(config.kafka)
        offsets = source.starting_offsets
        _require(
            offsets in STARTING_OFFSETS or offsets.lstrip().startswith("{"),
            "source.starting_offsets",
            f"unknown value {offsets!r}; allowed: earliest, latest, or Spark's JSON of offsets",
        )
    if source.type == "files":
        _require(bool(source.path), "source.path", "is required for the files source")
        _require(os.path.isdir(source.path), "source.path", f"{source.path} is not a folder")
    _require(
        source.max_offsets_per_trigger is None or source.max_offsets_per_trigger > 0,
        "source.max_offsets_per_trigger",
        f"must be above 0, got {source.max_offsets_per_trigger}",
    )
    _require(source.connect_timeout > 0, "source.connect_timeout", f"must be above 0, got {source.connect_timeout}")
    _require(
        source.type != "rate" or config.trigger.startswith("processing-time="),
        "trigger",
        "the rate source has nothing available at start; use processing-time=<interval> with it",
    )
    _require(source.rows_per_second > 0, "source.rows_per_second", f"must be above 0, got {source.rows_per_second}")
    for index, spec in enumerate(config.transforms):
        _require(
            spec.name not in PARSE_STAGE,
            f"transforms[{index}]",
            f"{spec.name} is part of the parse stage, which always runs first; list only transforms of the valid rows",
        )
        try:
            get_transform(spec.name, **spec.options)
        except (UnknownTransformError, TypeError, ValueError) as error:
            raise ConfigError(f"transforms[{index}]", str(error)) from None
    _validate_sink(config.output, "output")
    _validate_sink(config.quarantine, "quarantine")
    _require(config.quarantine.format != "csv", "quarantine.format", "must not be csv: payloads could become spreadsheet formulas; use json or parquet")
    _require(bool(config.checkpoint), "checkpoint", "is required")
    _require(not os.path.isfile(config.checkpoint), "checkpoint", f"{config.checkpoint} is a file, not a folder")
    if config.output.format in FILE_SINK_FORMATS and config.quarantine.format in FILE_SINK_FORMATS:
        _require(
            os.path.abspath(config.output.path) != os.path.abspath(config.quarantine.path),
            "quarantine.path",
            "must differ from output.path: each file sink owns its folder",
        )
    _require(
        _TRIGGER.match(config.trigger) is not None,
        "trigger",
        f"unknown trigger {config.trigger!r}; {_TRIGGER_HELP}",
    )
    _require(config.max_payload_bytes > 0, "max_payload_bytes", f"must be above 0, got {config.max_payload_bytes}")
