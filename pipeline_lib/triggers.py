"""When a streaming query runs its batches: the trigger strings of the configuration.

``available-now`` reads what is there in as many batches as it takes and stops; ``once`` reads
it in one batch and stops; ``processing-time=5s`` runs a batch every five seconds until stopped.
``real-time`` (Kafka to Kafka, ``pipeline_lib.realtime``) runs until stopped too, each record
written as it arrives; its interval (``real-time=30s``, default five minutes, Spark's) is only
how often Spark checkpoints.
"""

from __future__ import annotations

import re
from typing import Any, Dict

from pipeline_lib.errors import ConfigError

_DURATION = r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)"
_TRIGGER = re.compile(rf"^(available-now|once|processing-time={_DURATION}|real-time(?:={_DURATION})?)$")
_DURATION_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
REAL_TIME = "real-time"
DEFAULT_CHECKPOINT_INTERVAL = 300.0  # seconds: Spark's own default for a real-time trigger
TRIGGER_HELP = (
    "allowed: available-now, once, processing-time=<number><ms|s|m|h>, "
    "real-time[=<number><ms|s|m|h>] (Kafka to Kafka; the interval is how often it checkpoints, default 5m)"
)


def spark_trigger(trigger: str) -> Dict[str, Any]:
    """Keyword arguments for ``DataStreamWriter.trigger`` from a trigger string; a string of
    another form is a :class:`ConfigError` for ``trigger``.

    >>> spark_trigger("processing-time=5s"), spark_trigger("real-time=1.5m")
    ({'processingTime': '5 seconds'}, {'realTime': '90 seconds'})
    """
    match = _TRIGGER.match(trigger)
    if match is None:
        raise ConfigError("trigger", f"unknown trigger {trigger!r}; {TRIGGER_HELP}")
    if trigger == "available-now":
        return {"availableNow": True}
    if trigger == "once":
        return {"once": True}
    if is_real_time(trigger):
        # Spark parses "1.5 minutes" as an error (a fraction of a minute): seconds take fractions.
        seconds = f"{checkpoint_interval(trigger):.3f}".rstrip("0").rstrip(".")
        return {"realTime": f"{seconds} seconds"}
    return {"processingTime": f"{match.group(2)} {_DURATION_WORDS[match.group(3)]}"}


def is_real_time(trigger: str) -> bool:
    """Whether the trigger runs the query in Spark's real-time mode.

    >>> is_real_time("real-time"), is_real_time("real-time=30s"), is_real_time("processing-time=1s")
    (True, True, False)
    """
    return trigger == REAL_TIME or trigger.startswith(f"{REAL_TIME}=")


def checkpoint_interval(trigger: str) -> float:
    """The seconds between two checkpoints of a real-time trigger.

    >>> checkpoint_interval("real-time"), checkpoint_interval("real-time=1.5m")
    (300.0, 90.0)
    """
    match = _TRIGGER.match(trigger)
    if match is None or not is_real_time(trigger):
        raise ConfigError("trigger", f"{trigger!r} is not a real-time trigger; {TRIGGER_HELP}")
    if match.group(4) is None:
        return DEFAULT_CHECKPOINT_INTERVAL
    return float(match.group(4)) * _UNIT_SECONDS[match.group(5)]


def runs_until_stopped(trigger: str) -> bool:
    """Whether the trigger keeps the query running after the source is read (processing-time,
    real-time).

    >>> runs_until_stopped("available-now"), runs_until_stopped("processing-time=1s"), runs_until_stopped("real-time")
    (False, True, True)
    """
    return trigger.startswith("processing-time=") or is_real_time(trigger)
