"""Running the project's real commands from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT / "dist" / "pipeline_lib.zip"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
SUBMIT = ROOT / "infra" / "spark" / "submit"


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
