"""Stopping a running job cleanly on SIGINT (Ctrl-C) or SIGTERM (``kill``, Kestra's timeout).

Under ``python jobs/stream.py`` the JVM is PySpark's child, started with SIGINT ignored, so the
signals reach Python alone. Under ``spark-submit`` the JVM is the parent: its default handlers
would shut Spark down under the running query, so the JVM's handlers are replaced by one that
passes the signal on to Python. Either way the job finishes the batch in progress, prints its
summary and exits 0 for SIGTERM, 130 for SIGINT, as shells expect.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

from pyspark.sql import SparkSession

from pipeline_lib.session import launched_by_spark_submit

EXIT_CODES = {"INT": 130, "TERM": 0}


class StopRequest:
    """Set by the first stop signal; remembers which one."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: Optional[str] = None

    def set(self, signal_name: str) -> None:
        if not self.event.is_set():
            self.signal_name = signal_name
            self.event.set()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_name or "TERM", 0)


class _JvmSignalRelay:
    """A ``sun.misc.SignalHandler`` implemented in Python (through Py4J's callback server)."""

    def __init__(self, request: StopRequest):
        self._request = request

    def handle(self, jvm_signal) -> None:
        self._request.set(jvm_signal.getName())

    class Java:
        implements = ["sun.misc.SignalHandler"]


def stop_on_signals(spark: SparkSession, request: StopRequest) -> None:
    """Route SIGINT and SIGTERM to ``request``. Call it after the session exists: creating a
    SparkContext installs a SIGINT handler of PySpark's own, which this one replaces."""
    for number, name in ((signal.SIGINT, "INT"), (signal.SIGTERM, "TERM")):
        signal.signal(number, lambda *_, name=name: request.set(name))
    if launched_by_spark_submit():
        from pyspark.java_gateway import ensure_callback_server_started

        gateway = spark.sparkContext._gateway
        ensure_callback_server_started(gateway)
        relay = _JvmSignalRelay(request)
        jvm = spark.sparkContext._jvm
        assert jvm is not None, "a started SparkContext"
        for name in EXIT_CODES:
            jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal(name), relay)
