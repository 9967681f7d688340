"""Configuration: YAML file, environment and flags merged into plain values; errors name the field.

Precedence, lowest first: each setting's default, a YAML file (``--config``), environment
variables, command-line flags. This module knows no setting by itself: each layer of the library
declares its own settings as a pydantic model (the Kafka connection in ``kafka_client``, each
source and sink in its module) and :func:`parse` turns any problem into a :class:`ConfigError`
naming the field in dotted form (``output.format``) and what is allowed.

pydantic serves here because it type-checks and coerces (``"5"`` from an environment variable
to 5) from type hints alone; it runs on the driver only, never on executors.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline_lib.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Settings(BaseModel):
    """Base of every settings model: immutable, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def comma_separated(value: Any) -> Any:
    """A list setting given as one text (a flag, an environment variable) split at commas; any
    other value as it is, for the model to check.

    >>> comma_separated("id, value,"), comma_separated(["id"])
    (['id', 'value'], ['id'])
    """
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


def require(condition: bool, field_name: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``field_name`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(field_name, message)


def read_layers(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
    environment_names: Optional[Mapping[str, str]] = None,
) -> Dict[str, Any]:
    """The YAML file at ``path``, then the variables of ``environ`` named in
    ``environment_names`` (variable -> dotted field), then ``overrides`` (dotted field -> value;
    None means "not given"), merged into one nested mapping.

    >>> read_layers(overrides={"output.path": "/tmp/out", "trigger": None})
    {'output': {'path': '/tmp/out'}}
    """
    data: Dict[str, Any] = _read_yaml(path) if path else {}
    environ = os.environ if environ is None else environ
    from_environment = {key: environ[var] for var, key in (environment_names or {}).items() if environ.get(var)}
    for layer in (from_environment, overrides or {}):
        for dotted, value in layer.items():
            if value is None:
                continue
            *parents, leaf = dotted.split(".")
            node = data
            for depth, parent in enumerate(parents):
                node = node.setdefault(parent, {})
                if not isinstance(node, dict):
                    raise ConfigError(".".join(parents[: depth + 1]), "must be a mapping")
            node[leaf] = value
    return data


def parse(model: Type[M], data: Any, prefix: str = "") -> M:
    """``data`` validated as ``model``; a problem is a :class:`ConfigError` naming the field
    as ``prefix.field``.

    >>> class Example(Settings):
    ...     count: int = 1
    >>> parse(Example, {"count": "5"}).count
    5
    >>> parse(Example, {"count": "many"}, "producer")
    Traceback (most recent call last):
    ...
    pipeline_lib.errors.ConfigError: producer.count: must be a whole number, got 'many'
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "config", f"must be a mapping, got {data!r}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"]]
        owner = _model_at(model, location if first["type"] != "extra_forbidden" else location[:-1])
        message = _message(owner, first, data)
        named, _, rest = message.partition(": ")
        if named in owner.model_fields and rest and first["type"] not in ("extra_forbidden", "missing"):
            location, message = location + [named], rest  # a check across fields names the one to change
        raise ConfigError(".".join([prefix] * bool(prefix) + location) or "config", message) from None


def _model_at(model: Type[BaseModel], location: list) -> Type[BaseModel]:
    """The settings model that holds the field at ``location`` (a nested section's own)."""
    for part in location:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            break
    return model


def _message(model: Type[BaseModel], error: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    kind = error["type"]
    value: Any = data
    for part in error["loc"]:
        value = value.get(part) if isinstance(value, Mapping) else None
    if kind == "extra_forbidden":
        return f"unknown setting; allowed: {', '.join(model.model_fields)}"
    if kind.startswith("int_"):
        return f"must be a whole number, got {value!r}"
    if kind.startswith("float_"):
        return f"must be a number, got {value!r}"
    if kind.startswith("bool_"):
        return f"must be true or false, got {value!r}"
    if kind.startswith("string_"):
        return f"must be a string, got {value!r}"
    if kind == "missing":
        return "is required"
    if kind == "greater_than":
        return f"must be above {error['ctx']['gt']}, got {value!r}"
    if kind == "greater_than_equal":
        return f"must be {error['ctx']['ge']} or more, got {value!r}"
    if kind == "less_than_equal":
        return f"must be {error['ctx']['le']} or less, got {value!r}"
    if kind == "literal_error":
        return f"{value!r} is not allowed; allowed: {error['ctx']['expected']}"
    message = str(error["msg"])
    return message[len("Value error, ") :] if message.startswith("Value error, ") else message


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
