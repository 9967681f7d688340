"""One line per registered transform, source and sink, with its options and their defaults,
for ``jobs/stream.py --list-transforms`` (``--list-sources``, ``--list-sinks``).

Transforms are described by their factory's signature, sources and sinks by their ``Options``
model; plugins' entries are listed with the project's own.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Type

from pydantic import BaseModel

from pipeline_lib.sinks import SINKS
from pipeline_lib.sources import SOURCES
from pipeline_lib.transforms import TRANSFORMS

KINDS = ("transforms", "sources", "sinks")


def _value(value: Any) -> str:
    """A default as a reader writes it: a schema as its DDL-like string, others as ``repr``.

    >>> from pipeline_lib.schema import RECORD_SCHEMA
    >>> _value(RECORD_SCHEMA), _value(2), _value("value")
    ('struct<id:bigint,value:int,timestamp:double>', '2', "'value'")
    """
    return value.simpleString() if hasattr(value, "simpleString") else repr(value)


def _summary(thing: object) -> str:
    """The first sentence of ``thing``'s own docstring (not one it inherits)."""
    doc = inspect.cleandoc(vars(thing).get("__doc__") or "") if isinstance(thing, type) else inspect.getdoc(thing) or ""
    paragraph = doc.split("\n\n")[0].replace("\n", " ").strip()
    return paragraph.split(". ")[0].rstrip(".") + "." if paragraph else ""


def transform_line(name: str, factory: Callable[..., Any]) -> str:
    """``name(option=default, ...): summary`` from the factory's signature and docstring.

    >>> from pipeline_lib.transforms import add_processed_value
    >>> transform_line("add_processed_value", add_processed_value)
    "add_processed_value(factor=2, source='value', target='processed_value'): Add ``target = source * factor``."
    """
    options = [
        name_ if parameter.default is inspect.Parameter.empty else f"{name_}={_value(parameter.default)}"
        for name_, parameter in inspect.signature(factory).parameters.items()
    ]
    return f"{name}({', '.join(options)}): {_summary(factory)}"


def options_line(name: str, model: Type[BaseModel], summary: str = "") -> str:
    """``name: option=default, ...`` from a pydantic model; a required option says so.

    >>> from pipeline_lib.sources.files import FilesSourceOptions
    >>> options_line("files", FilesSourceOptions)
    'files: path (required)'
    """
    options = [
        f"{field} (required)" if info.is_required() else f"{field}={_value(info.default)}"
        for field, info in model.model_fields.items()
    ]
    return f"{name}: {', '.join(options) or 'no options'}" + (f"  -- {summary}" if summary else "")


def catalog_lines(kind: str) -> List[str]:
    """The lines of ``kind``: one of :data:`KINDS`."""
    if kind == "transforms":
        return [transform_line(name, TRANSFORMS.get(name)) for name in TRANSFORMS.names()]
    registries: Dict[str, Any] = {"sources": SOURCES, "sinks": SINKS}
    registry = registries[kind]
    return [options_line(name, registry.get(name).Options, _summary(registry.get(name))) for name in registry.names()]
