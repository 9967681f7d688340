"""Running the project's real commands from tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT / "dist" / "pipeline_lib.zip"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
SUBMIT = ROOT / "infra" / "spark" / "submit"
# The services' data is thrown away with the run: a graceful stop at its end (7 s for the
# cluster, 18 s for Kestra's engine) buys nothing, so they get this long before SIGKILL.
TEARDOWN_STOP_SECONDS = 1.0


def run(
    command: Sequence[str], timeout: float = 300, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None
) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    full_env.update(env or {})
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT
    )


def job(name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python jobs/<name>.py args``, as a user runs it locally."""
    return run([sys.executable, str(ROOT / "jobs" / f"{name}.py"), *args], **kwargs)


def spark_submit_command(script: Path, *args: str, master: str = "local[2]") -> List[str]:
    """The deployment path: ``infra/spark/submit`` (spark-submit with the library's zip, the
    connector's jars and the driver's class archive) ``script``."""
    return [
        str(SUBMIT), "--master", master,
        "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
        str(script), *args,
    ]


def spark_submit(script: Path, *args: str, master: str = "local[2]", **kwargs) -> subprocess.CompletedProcess:
    return run(spark_submit_command(script, *args, master=master), **kwargs)


def processes_running(*arguments: str) -> List[int]:
    """The pids of this machine's processes whose command line has each of ``arguments``."""
    wanted = [argument.encode() for argument in arguments]
    found = []
    for entry in os.listdir("/proc"):
        try:
            command_line = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0") if entry.isdigit() else []
        except OSError:
            continue  # ended while listed
        if command_line and all(argument in command_line for argument in wanted):
            found.append(int(entry))
    return found


def topic_records(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout: float = 60) -> list:
    """Every record on ``topic`` up to its end offsets as of the call (none when it does not
    exist), partition by partition in offset order; read_committed leaves out open and aborted
    transactions. Reading to the end offsets, not until the topic is quiet for a while, so that a
    test waits for nothing once the records are there."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: Dict[int, list] = {partition.partition: [] for partition in partitions}
        deadline = time.monotonic() + timeout
        while any(consumer.position(partition) < ends[partition] for partition in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end offsets {ends} within {timeout:g}s")
            for partition, batch in consumer.poll(timeout_ms=200).items():
                records[partition.partition].extend(batch)
        return [record for number in sorted(records) for record in records[number]]
    finally:
        consumer.close()


def stream_in_process(*arguments: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``jobs/stream.py arguments`` run by its main in this process, on the test run's own
    SparkSession, with ``env`` added to the environment meanwhile: for what the job does and
    says. The tests of how it starts (a process of its own, spark-submit, signals) use :func:`job`.
    Only Python's output is captured, not the JVM's own log."""
    import contextlib
    import io
    import signal

    from pipeline_lib.cli import stream_main

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    saved = {name: os.environ.get(name) for name in env or {}}
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = stream_main(list(arguments))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return subprocess.CompletedProcess(["jobs/stream.py", *arguments], code, stdout.getvalue(), stderr.getvalue())
