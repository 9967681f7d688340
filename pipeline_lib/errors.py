"""The library's errors: one base, so a caller can catch everything the library raises on purpose.

Every error names what to change in one line; where it was caused by another (a JVM error, a
refused connection), that cause is chained (``raise ... from error``) for whoever needs the whole
story, while the command line prints only the line.

>>> issubclass(ConfigError, PipelineError), issubclass(ConfigError, ValueError)
(True, True)
>>> str(ConfigError("output.path", "is required"))
'output.path: is required'
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors the library raises on purpose."""


class ConfigError(PipelineError, ValueError):
    """A configuration value that cannot be used; ``field`` names it in dotted form (or the flag
    or environment variable the user typed)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.detail = message


class StopRequested(PipelineError):
    """A micro-batch refused because the run is stopping; the next run does it."""
