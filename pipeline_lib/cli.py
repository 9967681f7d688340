"""Command lines of the two jobs; ``jobs/produce.py`` and ``jobs/stream.py`` only call these.

Exit codes: 0 success, 1 the work failed (a one-line reason on stderr), 2 bad configuration
(one line naming the option, before any work is done).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

from pipeline_lib.config import (
    SINK_FORMATS,
    SOURCE_TYPES,
    ConfigError,
    load_pipeline_config,
    load_producer_config,
)

EXIT_FAILED = 1
EXIT_CONFIG = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exit code 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse says "argument --count: invalid int value: 'x'"; keep the flag as the field.
        prefix, _, detail = message.partition(": ")
        if prefix.startswith("argument ") and detail:
            raise ConfigError(prefix[len("argument "):], detail)
        raise ConfigError("arguments", message)


def _parser(description: str, flags: Dict[str, Dict[str, Any]]) -> argparse.ArgumentParser:
    parser = _OneLineParser(description=description)
    parser.add_argument("--config", help="YAML file; flags override it, it overrides defaults")
    for flag, options in flags.items():
        parser.add_argument(flag, default=None, **options)
    return parser


PRODUCE_FLAGS: Dict[str, Dict[str, Any]] = {
    "--bootstrap-servers": dict(dest="kafka.bootstrap_servers", help="host:port[,host:port]"),
    "--topic": dict(dest="kafka.topic", help="topic to send to (default input-data)"),
    "--count": dict(dest="count", type=int, help="records to send (default 20)"),
    "--rate": dict(dest="rate", type=float, help="records per second (default: unlimited)"),
    "--seed": dict(dest="seed", type=int, help="seed of the random values"),
    "--start-id": dict(dest="start_id", type=int, help="first id (default 1)"),
    "--partitions": dict(dest="partitions", type=int, help="partitions if the topic is created (default 1)"),
    "--timeout": dict(dest="timeout", type=float, help="seconds to reach the broker and be acknowledged (default 30)"),
}

STREAM_FLAGS: Dict[str, Dict[str, Any]] = {
    "--bootstrap-servers": dict(dest="kafka.bootstrap_servers", help="host:port[,host:port]"),
    "--topic": dict(dest="kafka.topic", help="topic to read (default input-data)"),
    "--source": dict(dest="source.type", help=f"one of {', '.join(SOURCE_TYPES)} (default kafka)"),
    "--source-path": dict(dest="source.path", help="folder of JSON-lines files, for --source files"),
    "--starting-offsets": dict(dest="source.starting_offsets", help="earliest (default) or latest"),
    "--max-offsets-per-trigger": dict(dest="source.max_offsets_per_trigger", type=int, help="cap per micro-batch"),
    "--output": dict(dest="output.path", help="output folder (default output)"),
    "--format": dict(dest="output.format", help=f"one of {', '.join(SINK_FORMATS)} (default csv)"),
    "--quarantine": dict(dest="quarantine.path", help="folder for rejected records, JSON lines"),
    "--checkpoint": dict(dest="checkpoint", help="checkpoint folder; one subfolder per query"),
    "--trigger": dict(dest="trigger", help="available-now (default), once, processing-time=5s"),
    "--show": dict(dest="show", type=int, help="print up to N output rows after an available-now run"),
}


def _overrides(args: argparse.Namespace, flags: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    return {options["dest"]: getattr(args, options["dest"]) for options in flags.values()}


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _say(line: str) -> None:
    print(line, flush=True)


def kestra_outputs(outputs: Dict[str, Any]) -> None:
    """Report ``outputs`` to Kestra when its Python package is installed (as in the flow)."""
    try:
        from kestra import Kestra
    except ImportError:
        return
    Kestra.outputs(outputs)


def produce_main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline_lib.producer import ProduceError, send_records

    try:
        args = _parser("Send generated records to Kafka.", PRODUCE_FLAGS).parse_args(argv)
        config = load_producer_config(args.config, _overrides(args, PRODUCE_FLAGS))
    except ConfigError as error:
        return _fail(EXIT_CONFIG, str(error))
    try:
        sent = send_records(config, emit=_say)
    except ProduceError as error:
        kestra_outputs({"records_sent": error.acknowledged})
        return _fail(EXIT_FAILED, str(error))
    _say(f"sent {sent} records to {config.kafka.topic}")
    kestra_outputs({"records_sent": sent})
    return 0


def stream_main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = _parser("Stream records from a source through the transforms into files.", STREAM_FLAGS).parse_args(argv)
        overrides = _overrides(args, STREAM_FLAGS)
        show = overrides.pop("show")
        if show is not None and show < 0:
            raise ConfigError("--show", f"must be 0 or more, got {show}")
        config = load_pipeline_config(args.config, overrides)
    except ConfigError as error:
        return _fail(EXIT_CONFIG, str(error))

    from pipeline_lib.pipeline import run_pipeline
    from pipeline_lib.session import get_spark
    from pipeline_lib.sinks import read_output

    stop = threading.Event()
    _stop_on_signals(stop.set)
    source = config.kafka.topic if config.source.type == "kafka" else config.source.type
    _say(
        f"reading {source}, writing {config.output.format} to {config.output.path}, "
        f"quarantine to {config.quarantine.path}, trigger {config.trigger}"
    )
    try:
        spark = get_spark(config.app_name)
        summary = run_pipeline(spark, config, emit=_say, stop_event=stop)
        _say(summary.line())
        kestra_outputs({"rows_written": summary.written, "rows_quarantined": summary.quarantined})
        if show and config.output.format != "console":
            read_output(spark, config.output).orderBy("id").show(show, truncate=False)
    except Exception as error:  # noqa: BLE001 (every failure ends as one line and exit 1)
        return _fail(EXIT_FAILED, one_line(error))
    return 0


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (Kestra's timeout, ``kill``) and SIGINT stop the queries; a batch cut short is not
    committed, so the next run redoes it without writing twice."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop())


def one_line(error: BaseException) -> str:
    """The most telling line of a (possibly JVM) exception: its innermost cause, without
    stack frames.

    >>> one_line(RuntimeError("boom\\n  at x.y(Z.java:1)"))
    'RuntimeError: boom'
    """
    lines: List[str] = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith("at ") and "Exception" in line and ":" in line]
    text = causes[-1] if causes else (lines[0] if lines else "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
