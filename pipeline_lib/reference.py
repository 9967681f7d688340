"""The configuration reference, written from the models the code validates with.

``python -m pipeline_lib.reference > docs/reference/configuration.md`` (``make docs``) writes the
page; a test fails when the page and the code disagree, so the reference is never stale.
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, Dict, Iterable, List, Type

from pydantic import BaseModel

from pipeline_lib.catalog import transform_line
from pipeline_lib.kafka_client import KAFKA_ENVIRONMENT, KafkaSettings
from pipeline_lib.sinks import SINKS
from pipeline_lib.sources import SOURCES
from pipeline_lib.transforms import TRANSFORMS

HEADER = """# Configuration reference

Written by `make docs` from the models the code validates with; do not edit by hand. Precedence,
lowest first: each setting's default, the YAML file (`--config`), the environment, the flags.
A setting the models do not know is refused, naming it.
"""


def _type(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int``, ``str or none``, ``one of a, b``."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(value) for value in arguments)
    if origin is typing.Union:
        named = [_type(argument) for argument in arguments if argument is not type(None)]
        return " or ".join(named) + (" or none" if type(None) in arguments else "")
    if origin in (tuple, list):
        return f"list of {_type(arguments[0])}" if arguments else "list"
    if origin is dict:
        return "mapping"
    text = getattr(annotation, "__name__", str(annotation))
    return re.sub(r"^typing\.", "", text)


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if hasattr(value, "simpleString"):
        return f"`{value.simpleString()}`"
    return f"`{value!r}`"


def model_table(model: Type[BaseModel], prefix: str, skip: Iterable[str] = ()) -> List[str]:
    """A Markdown table of ``model``'s settings, keys written ``prefix.name``."""
    rows = ["| setting | type | default |", "| --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        key = f"{prefix}.{name}" if prefix else name
        rows.append(f"| `{key}` | {_type(info.annotation)} | {_default(info)} |")
    return rows


def _summary(thing: object) -> str:
    doc = inspect.cleandoc(vars(thing).get("__doc__") or "") if isinstance(thing, type) else ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "`").strip()


def reference() -> str:
    """The whole page, as Markdown."""
    from pipeline_lib.cli import PRODUCE_FLAGS, _stream_flags
    from pipeline_lib.pipeline import _Sections

    lines: List[str] = [HEADER, "## Top level", ""]
    lines += model_table(_Sections, "", skip=("kafka", "source", "output", "quarantine", "transforms"))
    lines += ["", "## `kafka`: the connection (the Kafka source, the Kafka sink, the producer)", ""]
    lines += model_table(KafkaSettings, "kafka")
    lines += ["", "Environment variables:", ""]
    lines += [f"- `{variable}`: `{key}`" for variable, key in KAFKA_ENVIRONMENT.items()]
    lines += ["", "## `source`: where records come from", "", "`source.type` picks one; its settings follow."]
    for name in SOURCES.names():
        source = SOURCES.get(name)
        lines += ["", f"### `type: {name}`", "", _summary(source) or f"The {name} source.", ""]
        lines += model_table(source.Options, "source")
    lines += [
        "",
        "## `output` and `quarantine`: where rows go",
        "",
        "`format` picks a sink; its settings follow, under `output.` or `quarantine.`.",
    ]
    for name in SINKS.names():
        sink = SINKS.get(name)
        lines += ["", f"### `format: {name}`", "", _summary(sink) or f"The {name} sink.", ""]
        lines += model_table(sink.Options, "output")
    lines += ["", "## `transforms`: the steps of the valid rows, in order", ""]
    lines += [f"- `{transform_line(name, TRANSFORMS.get(name))}`" for name in TRANSFORMS.names()]
    lines += ["", "## Flags of `jobs/stream.py`", ""]
    lines += _flag_rows(_stream_flags())
    lines += ["", "## Flags of `jobs/produce.py`", ""]
    lines += _flag_rows(PRODUCE_FLAGS)
    return "\n".join(lines) + "\n"


def _flag_rows(flags: Dict[str, Dict[str, Any]]) -> List[str]:
    rows = ["| flag | setting | what |", "| --- | --- | --- |"]
    for flag, options in flags.items():
        dest = options["dest"]
        setting = f"`{dest}`" if "." in dest or dest in ("checkpoint", "trigger") else "-"
        help_text = str(options.get("help", "")).replace("|", "\\|")
        rows.append(f"| `{flag} {options.get('metavar', 'VALUE')}` | {setting} | {help_text} |")
    return rows


if __name__ == "__main__":
    print(reference(), end="")
