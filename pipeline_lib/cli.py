"""Command lines of the two jobs; ``jobs/produce.py`` and ``jobs/stream.py`` only call these.

Exit codes: 0 success, 1 the work failed (a one-line reason on stderr), 2 bad configuration
(one line naming the option, before any work is done).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import KAFKA_ENVIRONMENT
from pipeline_lib.reports import kestra_outputs, offsets_text

EXIT_FAILED = 1
EXIT_CONFIG = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exit code 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse says "argument --count: invalid int value: 'x'"; keep the flag as the field.
        prefix, _, detail = message.partition(": ")
        if prefix.startswith("argument ") and detail:
            raise ConfigError(prefix[len("argument ") :], detail)
        raise ConfigError("arguments", message)


ENVIRONMENT_HELP = "environment: " + ", ".join(KAFKA_ENVIRONMENT) + " (flags override them, they override --config)"
EXIT_HELP = (
    "exit codes: 0 done, 1 the work failed (one line on stderr), 2 bad configuration (one line naming the option)"
)


def _parser(description: str, flags: Dict[str, Dict[str, Any]], epilog: str = "") -> argparse.ArgumentParser:
    parser = _OneLineParser(
        description=description,
        epilog="\n".join(filter(None, [epilog, ENVIRONMENT_HELP, EXIT_HELP])),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file; flags override it, it overrides defaults")
    for flag, options in flags.items():
        parser.add_argument(flag, **{"default": None, "metavar": "VALUE", **options})
    return parser


PRODUCE_FLAGS: Dict[str, Dict[str, Any]] = {
    "--bootstrap-servers": dict(
        dest="kafka.bootstrap_servers", metavar="HOST:PORT", help="broker(s), comma-separated (default 127.0.0.1:9092)"
    ),
    "--topic": dict(dest="kafka.topic", metavar="NAME", help="topic to send to (default input-data)"),
    "--count": dict(dest="count", type=int, metavar="N", help="records to send (default 20)"),
    "--rate": dict(
        dest="rate", type=float, metavar="PER_SECOND", help="records per second (default: as fast as acknowledged)"
    ),
    "--seed": dict(dest="seed", type=int, metavar="N", help="seed of the random values (default: random)"),
    "--start-id": dict(
        dest="start_id", type=int, metavar="ID", help="first id (default: one past the highest id on the topic)"
    ),
    "--partitions": dict(
        dest="partitions", type=int, metavar="N", help="partitions if the topic is created (default 1)"
    ),
    "--replication-factor": dict(
        dest="replication_factor",
        type=int,
        metavar="N",
        help="replicas of each partition if the topic is created (default: 3 on three brokers or more, else 1)",
    ),
    "--timeout": dict(
        dest="timeout", type=float, metavar="SECONDS", help="to reach the broker and be acknowledged (default 30)"
    ),
    "--run-id": dict(
        dest="run_id",
        metavar="ID",
        help="one Kafka transaction per run, values seeded by ID: a retry sends the same records "
        "(Kestra: {{ execution.id }})",
    ),
    "--run-start": dict(
        dest="run_start",
        metavar="TIME",
        help="with --run-id: ISO-8601 or epoch seconds, the first record's timestamp "
        "(Kestra: {{ execution.startDate }})",
    ),
}


def _stream_flags() -> Dict[str, Dict[str, Any]]:
    from pipeline_lib.sinks import SINKS
    from pipeline_lib.sources import SOURCES

    return {
        "--bootstrap-servers": dict(
            dest="kafka.bootstrap_servers",
            metavar="HOST:PORT",
            help="broker(s), comma-separated (default 127.0.0.1:9092)",
        ),
        "--topic": dict(dest="kafka.topic", metavar="NAME", help="topic to read (default input-data)"),
        "--source": dict(
            dest="source.type", metavar="TYPE", help=f"one of {', '.join(SOURCES.names())} (default kafka)"
        ),
        "--source-path": dict(dest="source.path", metavar="DIR", help="folder of JSON-lines files, for --source files"),
        "--starting-offsets": dict(
            dest="source.starting_offsets", metavar="WHERE", help="earliest (default) or latest"
        ),
        "--starting-timestamp": dict(
            dest="source.starting_timestamp",
            metavar="TIME",
            help="in place of --starting-offsets: each partition from its first record at or after TIME "
            "(epoch milliseconds or ISO-8601, UTC unless it names its zone; no such record: from its end); "
            "a new checkpoint only, a resumed one goes on from its own offsets",
        ),
        "--on-data-loss": dict(
            dest="source.on_data_loss",
            metavar="MODE",
            help="offsets the checkpoint had not read but Kafka's retention deleted: fail (default; one line "
            "naming them, exit 1) or skip them (counted in the summary)",
        ),
        "--include-headers": dict(
            dest="source.include_headers",
            action="store_const",
            const=True,
            help="the records' Kafka headers as a headers column of the output (JSON text); "
            "the quarantine always has them",
        ),
        "--max-offsets-per-trigger": dict(
            dest="source.max_offsets_per_trigger",
            type=int,
            metavar="N",
            help="records per micro-batch at most (default: all)",
        ),
        "--connect-timeout": dict(
            dest="source.connect_timeout",
            type=float,
            metavar="SECONDS",
            help="to reach the broker before starting (default 30)",
        ),
        "--output": dict(dest="output.path", metavar="DIR", help="output folder (default output)"),
        "--format": dict(
            dest="output.format", metavar="FORMAT", help=f"one of {', '.join(SINKS.names())} (default csv)"
        ),
        "--output-topic": dict(dest="output.topic", metavar="NAME", help="topic to write, for --format kafka"),
        "--quarantine": dict(
            dest="quarantine.path", metavar="DIR", help="folder of rejected records, JSON lines (default quarantine)"
        ),
        "--quarantine-topic": dict(
            dest="quarantine.topic",
            metavar="NAME",
            help="in place of --quarantine: rejected records to this Kafka topic, keyed <topic>-<partition>-<offset>",
        ),
        "--checkpoint": dict(
            dest="checkpoint", metavar="DIR", help="the query's checkpoint folder (default checkpoint)"
        ),
        "--trigger": dict(
            dest="trigger",
            metavar="WHEN",
            help="available-now (default), once, processing-time=5s, real-time[=5m] (Kafka to Kafka, record by "
            "record; the interval is how often it checkpoints)",
        ),
        "--schema": dict(
            dest="schema",
            metavar="DDL",
            help="the records' fields in Spark's DDL, 'order_id long, amount decimal(10,2)' (default: the seed's)",
        ),
        "--show": dict(dest="show", type=int, metavar="N", help="print up to N output rows after the run"),
        "--metrics-port": dict(
            dest="metrics_port",
            type=int,
            metavar="PORT",
            help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while the job runs",
        ),
        "--metrics-file": dict(
            dest="metrics_file", metavar="PATH", help="append one JSON object per batch, and one for the run's summary"
        ),
    }


def _overrides(args: argparse.Namespace, flags: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    return {options["dest"]: getattr(args, options["dest"]) for options in flags.values()}


def _as_typed(error: ConfigError, flags: Dict[str, Dict[str, Any]], overrides: Dict[str, Any]) -> ConfigError:
    """``error`` naming what the user wrote: the flag, or the environment variable, if the
    value came from one; the dotted key of the file otherwise."""
    for flag, options in flags.items():
        if options["dest"] == error.field and overrides.get(error.field) is not None:
            return ConfigError(flag, str(error)[len(error.field) + 2 :])
    for variable, key in KAFKA_ENVIRONMENT.items():
        if key == error.field and os.environ.get(variable) and overrides.get(key) is None:
            return ConfigError(variable, str(error)[len(error.field) + 2 :])
    return error


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _say(line: str) -> None:
    print(line, flush=True)


def produce_parser() -> argparse.ArgumentParser:
    """jobs/produce.py's command line."""
    return _parser("Send generated records to Kafka.", PRODUCE_FLAGS)


def stream_parser(flags: Optional[Dict[str, Dict[str, Any]]] = None) -> argparse.ArgumentParser:
    """jobs/stream.py's command line."""
    parser = _parser("Stream records from a source through the transforms into files.", flags or _stream_flags())
    parser.add_argument(
        "--dry-run", action="store_true", help="check the configuration, print the plan and exit, writing nothing"
    )
    for kind in ("transforms", "sources", "sinks"):
        parser.add_argument(
            f"--list-{kind}", action="store_true", help=f"print the {kind}, one a line with its options, and exit"
        )
    return parser


def produce_main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline_lib.producer import ProduceError, load_producer_config, send_records

    overrides: Dict[str, Any] = {}
    try:
        args = produce_parser().parse_args(argv)
        overrides = _overrides(args, PRODUCE_FLAGS)
        config = load_producer_config(args.config, overrides)
    except ConfigError as error:
        return _fail(EXIT_CONFIG, str(_as_typed(error, PRODUCE_FLAGS, overrides)))
    try:
        sent = send_records(config, emit=_say)
    except ProduceError as error:
        # No records_sent output: a failed attempt's count would read as if the task had run.
        return _fail(EXIT_FAILED, str(error))
    _say(f"sent {sent} records to {config.kafka.topic}")
    kestra_outputs({"records_sent": sent})
    return 0


def stream_main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline_lib.pipeline import load_pipeline_config

    flags = _stream_flags()
    overrides: Dict[str, Any] = {}
    try:
        args = stream_parser(flags).parse_args(argv)
        listed = [kind for kind in ("transforms", "sources", "sinks") if getattr(args, f"list_{kind}")]
        if listed:
            from pipeline_lib.catalog import catalog_lines

            for kind in listed:
                for line in catalog_lines(kind):
                    _say(line)
            return 0
        overrides = _overrides(args, flags)
        if overrides.get("quarantine.topic") is not None:
            if overrides.get("quarantine.path") is not None:
                raise ConfigError("--quarantine-topic", "and --quarantine both name the quarantine: give one")
            overrides["quarantine.format"] = "kafka"
        show = overrides.pop("show")
        metrics_file = overrides.pop("metrics_file")
        metrics_port = overrides.pop("metrics_port")
        if metrics_port is not None and not 0 < metrics_port < 65536:
            raise ConfigError("--metrics-port", f"must be a port number, 1 to 65535, got {metrics_port}")
        if show is not None and show < 0:
            raise ConfigError("--show", f"must be 0 or more, got {show}")
        config = load_pipeline_config(args.config, overrides)
    except ConfigError as error:
        return _fail(EXIT_CONFIG, str(_as_typed(error, flags, overrides)))

    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    from pipeline_lib.plan import make_plan

    try:
        plan = make_plan(config)  # the source is asked before Spark starts: a refusal costs no JVM
    except ConfigError as error:
        return _fail(EXIT_CONFIG, str(_as_typed(error, flags, overrides)))
    except (PipelineError, PySparkException, OSError) as error:
        # A dry run is a check: whatever stops the plan is something to fix before running.
        return _fail(EXIT_CONFIG if args.dry_run else EXIT_FAILED, one_line(error))
    _say(
        f"reading {config.source.describe()}, writing {config.output.describe()}, "
        f"quarantine {config.quarantine.describe()}, trigger {config.trigger}"
    )
    if args.dry_run:
        for line in plan.lines():
            _say(line)
        return 0
    if plan.offsets_lost:
        _say(f"skipping offsets deleted by retention before this job read them: {offsets_text(plan.offsets_lost)}")

    from pipeline_lib.reports import ConsoleListener, JsonLinesListener, KestraOutputs, Listener
    from pipeline_lib.run import run
    from pipeline_lib.session import get_spark
    from pipeline_lib.stopping import StopRequest, stop_on_signals

    stop = StopRequest()
    listeners: List[Listener] = [ConsoleListener(_say), KestraOutputs()]
    if metrics_port is not None:
        from pipeline_lib.prometheus import PrometheusListener

        try:
            listeners.append(PrometheusListener(metrics_port))
        except OSError as error:
            return _fail(EXIT_CONFIG, f"--metrics-port: cannot serve on 127.0.0.1:{metrics_port}: {error.strerror}")
    try:
        if metrics_file:
            listeners.append(JsonLinesListener(metrics_file))
        spark = get_spark(config.app_name)
        stop_on_signals(spark, stop)
        run(plan, spark, listeners, stop_event=stop.event)
        if show and config.output.location:
            from pipeline_lib.sinks.csv import with_plain_decimals

            held = config.output.read(spark)
            held.orderBy(*held.columns[:1]).transform(with_plain_decimals).show(show, truncate=False)
    except (PipelineError, PySparkException, Py4JJavaError, OSError) as error:
        from pipeline_lib.sources.kafka import data_loss_error

        mapped = data_loss_error(error) or storage_error(error, _run_folders(config))
        return _fail(EXIT_FAILED, one_line(mapped or error))
    finally:
        for listener in listeners:
            listener.close()
    return stop.exit_code if stop.event.is_set() else 0


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


class StorageError(PipelineError):
    """A folder of the run could not be written: its file system is full, or read-only."""


# What the JVM (Hadoop, Spark) says of each condition; how the line says it, and what to do.
_STORAGE_CONDITIONS = {
    "No space left on device": ("no space is left on the file system of {folder}", "free space there"),
    "Read-only file system": ("{folder} is on a read-only file system", "make it writable"),
}


def _run_folders(config: Any) -> Dict[str, str]:
    """The folders a stream run writes, each as the line names it."""
    folders = {"checkpoint folder": config.checkpoint}
    for name, sink in (("output", config.output), ("quarantine", config.quarantine)):
        if sink.location:
            folders[f"{name} folder"] = sink.location
    return folders


def storage_error(error: BaseException, folders: Dict[str, str]) -> Optional[StorageError]:
    """``error`` as one line naming the folder of ``folders`` (name -> path) whose file system
    is full or read-only, caused by ``error``; None for any other error.

    >>> storage_error(OSError("Task failed while writing rows to file:/data/out/_staging/batch-4.\\n"
    ...     "Caused by: java.io.IOException: No space left on device"), {"output folder": "/data/out"})
    StorageError('no space is left on the file system of output folder /data/out (writing \
/data/out/_staging/batch-4): free space there and run the job again; it goes on from its last committed batch')
    """
    text = str(error)
    found = [condition for marker, condition in _STORAGE_CONDITIONS.items() if marker in text]
    if not found:
        return None
    words, remedy = found[0]
    local = {name: path.removeprefix("file:") for name, path in folders.items()}
    roots = {name: os.path.abspath(path) for name, path in local.items() if "://" not in path}
    folder, written = _folder_written(text, roots)
    then = "run the job again; it goes on from its last committed batch"
    mapped = StorageError(f"{words.format(folder=folder)}{written}: {remedy} and {then}")
    mapped.__cause__ = error
    return mapped


def _folder_written(text: str, roots: Dict[str, str]) -> Tuple[str, str]:
    """The folder of ``roots`` that the first path of theirs in ``text`` lies in (``name path``)
    and ``" (writing <that path>)"``; every folder and "" when ``text`` names none of them."""
    for path in (match.rstrip(".:") for match in re.findall(r"(?:file:)?(/[^\s'\"(),;]+)", text)):
        owners = [name for name, root in roots.items() if path == root or path.startswith(root + os.sep)]
        if owners:
            name = max(owners, key=lambda owner: len(roots[owner]))  # the innermost, were folders nested
            return f"{name} {roots[name]}", f" (writing {path})"
    return "a folder of the run (" + ", ".join(f"{name} {root}" for name, root in roots.items()) + ")", ""
