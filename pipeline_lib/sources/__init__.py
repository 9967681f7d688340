"""Sources by type name: ``kafka``, ``files``, ``rate``, and those of installed plugins."""

from pipeline_lib.sources import files, kafka, rate  # noqa: F401  (each registers itself)
from pipeline_lib.sources.base import SOURCES, Source, build_source, register_source

__all__ = ["SOURCES", "Source", "build_source", "register_source"]
