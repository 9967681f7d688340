"""When a streaming query runs its micro-batches: the trigger strings of the configuration.

``available-now`` reads what is there in as many batches as it takes and stops; ``once`` reads
it in one batch and stops; ``processing-time=5s`` runs a batch every five seconds until stopped.
"""

from __future__ import annotations

import re
from typing import Any, Dict

from pipeline_lib.errors import ConfigError

_TRIGGER = re.compile(r"^(available-now|once|processing-time=(\d+(?:\.\d+)?)\s*(ms|s|m|h))$")
_DURATION_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}
TRIGGER_HELP = "allowed: available-now, once, processing-time=<number><ms|s|m|h>"


def spark_trigger(trigger: str) -> Dict[str, Any]:
    """Keyword arguments for ``DataStreamWriter.trigger`` from a trigger string; a string of
    another form is a :class:`ConfigError` for ``trigger``.

    >>> spark_trigger("processing-time=5s")
    {'processingTime': '5 seconds'}
    """
    match = _TRIGGER.match(trigger)
    if match is None:
        raise ConfigError("trigger", f"unknown trigger {trigger!r}; {TRIGGER_HELP}")
    if trigger == "available-now":
        return {"availableNow": True}
    if trigger == "once":
        return {"once": True}
    return {"processingTime": f"{match.group(2)} {_DURATION_WORDS[match.group(3)]}"}


def runs_until_stopped(trigger: str) -> bool:
    """Whether the trigger keeps the query running after the source is read (processing-time).

    >>> runs_until_stopped("available-now"), runs_until_stopped("processing-time=1s")
    (False, True)
    """
    return trigger.startswith("processing-time=")
