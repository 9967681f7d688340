"""Run a Kestra flow on Kestra's own engine, without a server, UI or Docker.

    python infra/kestra/run_flow.py flows/simple-data-pipeline.yml \\
        --input bootstrap_servers=127.0.0.1:9092 --input output_path=.flow/output [--json]

Starts Kestra's engine (the published modules of Kestra, in the JVM of ``Launcher.java``, built
with Maven on first use into ``infra/kestra/target``), validates the flow with Kestra's own
rules, runs one execution and prints a line per task run (task id, final state, attempts) and
the flow's outputs. ``--json`` prints one JSON object instead:
``{"state": ..., "taskRuns": [{"taskId", "state", "attempts"}], "outputs": {...}}``.
Exit codes: 0 the execution ended SUCCESS, 1 it did not (or the engine could not run), 2 a bad
input name or value, or a flow Kestra rejects (one line naming it).

The python plugin that the flow's command tasks name (``io.kestra.plugin.scripts.python.Commands``,
shipped by Kestra's Docker image) is not among the published modules: the engine runs those two
tasks with the project's ``dataplatform.kestra.ShellCommands``, which runs the same commands on
the same Process task runner and logs each stderr line at the level of what it is (Kestra's
script tasks log every one at ERROR). That type is the only change made to the flow
(``engine_source``).

The task processes get the project's virtualenv first on PATH (``python``, ``spark-submit``),
``PYSPARK_PYTHON`` set to its Python and ``PIPELINE_JARS`` set to ``infra/spark/jars``.
Kestra's classes need Java 25: ``KESTRA_JAVA_HOME``, or ``/usr/lib/jvm/temurin-25-jdk-amd64``.

From Python (one engine, several executions, also side by side)::

    with KestraEngine() as engine:
        execution = engine.run("flows/simple-data-pipeline.yml", {"record_count": 5})
        execution.state, execution.task_runs, execution.outputs
        execution.state_history, execution.logs, execution.log_levels
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = HERE / "target"
ENGINE_JAR = TARGET / "kestra-engine.jar"
LIBS = TARGET / "libs"
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/temurin-25-jdk-amd64")
JAVA_RELEASE = 25

OFFICIAL_COMMANDS_TYPE = "io.kestra.plugin.scripts.python.Commands"
ENGINE_COMMANDS_TYPE = "dataplatform.kestra.ShellCommands"
_TYPE_LINE = re.compile(
    r"^(\s*(?:-\s+)?type:\s*)" + re.escape(OFFICIAL_COMMANDS_TYPE) + r"(\s*(?:#.*)?)$", re.MULTILINE
)

EXIT_SUCCESS, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2


class EngineError(RuntimeError):
    """The engine could not start, answer or finish an execution in time."""


class JavaNotFound(EngineError):
    """No Java 25 to run Kestra's classes."""


class FlowRejected(ValueError):
    """Kestra's validation refused the flow."""


class BadInput(ValueError):
    """An input the flow does not declare, or a value Kestra cannot read as the input's type."""


@dataclass
class TaskRun:
    task_id: str
    state: str
    attempts: int


@dataclass
class StateChange:
    state: str
    date: datetime


@dataclass
class Execution:
    id: str
    state: str
    task_runs: List[TaskRun]
    outputs: Dict[str, Any]
    seconds: float
    logs: List[Dict[str, Any]] = field(default_factory=list)
    state_history: List[StateChange] = field(default_factory=list)
    log_levels: Dict[str, int] = field(default_factory=dict)

    def task_run(self, task_id: str) -> Optional[TaskRun]:
        return next((run for run in self.task_runs if run.task_id == task_id), None)

    def entered(self, state: str) -> Optional[datetime]:
        """When the execution first entered ``state`` (None if it never did)."""
        return next((change.date for change in self.state_history if change.state == state), None)

    @property
    def ended(self) -> Optional[datetime]:
        """When the execution reached its final state."""
        return self.state_history[-1].date if self.state_history else None

    def logs_of(self, task_id: str, level: Optional[str] = None) -> List[str]:
        return [
            entry["message"]
            for entry in self.logs
            if entry.get("taskId") == task_id and (level is None or entry.get("level") == level)
        ]

    def summary(self) -> Dict[str, Any]:
        """The ``--json`` object."""
        return {
            "state": self.state,
            "taskRuns": [
                {"taskId": run.task_id, "state": run.state, "attempts": run.attempts} for run in self.task_runs
            ],
            "outputs": self.outputs,
        }


@dataclass
class Validation:
    ok: bool
    errors: List[str]
    warnings: List[str]


def engine_source(source: str) -> str:
    """The flow as the engine runs it: the python Commands tasks typed as the project's
    ShellCommands; every other line as it is."""
    return _TYPE_LINE.sub(lambda match: match.group(1) + ENGINE_COMMANDS_TYPE + match.group(2), source)


def _java_release(java_home: Path) -> Optional[int]:
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def find_java() -> Path:
    """The home of a JDK 25 or newer: ``KESTRA_JAVA_HOME``, else the Temurin 25 folder."""
    configured = os.environ.get("KESTRA_JAVA_HOME")
    candidates = [Path(configured)] if configured else [DEFAULT_JAVA_HOME]
    for home in candidates:
        release = _java_release(home)
        if release is not None and release >= JAVA_RELEASE and (home / "bin" / "java").exists():
            return home
    where = f"KESTRA_JAVA_HOME={configured}" if configured else f"{DEFAULT_JAVA_HOME} (or KESTRA_JAVA_HOME)"
    raise JavaNotFound(f"Kestra 2.0 needs Java {JAVA_RELEASE}: no JDK {JAVA_RELEASE}+ at {where}")


def _sources() -> List[Path]:
    return [HERE / "pom.xml", *sorted((HERE / "src").rglob("*"))]


def _built() -> bool:
    marker = LIBS / ".fetched"
    if not (ENGINE_JAR.exists() and marker.exists()):
        return False
    newest = max(path.stat().st_mtime for path in _sources() if path.is_file())
    return min(ENGINE_JAR.stat().st_mtime, marker.stat().st_mtime) >= newest


def build(java_home: Optional[Path] = None, quiet: bool = True) -> Path:
    """Compile the launcher and copy Kestra's jars into ``infra/kestra/target`` with Maven,
    unless they are up to date; returns the classpath."""
    java_home = java_home or find_java()
    TARGET.mkdir(exist_ok=True)
    with open(TARGET / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _built():
            shutil.rmtree(LIBS, ignore_errors=True)
            command = [
                "mvn",
                "-B",
                "-f",
                str(HERE / "pom.xml"),
                "package",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={LIBS}",
            ] + (["-q"] if quiet else [])
            env = dict(os.environ, JAVA_HOME=str(java_home))
            result = subprocess.run(command, env=env, capture_output=quiet, text=True)
            if result.returncode != 0:
                tail = "\n".join(((result.stdout or "") + (result.stderr or "")).splitlines()[-20:])
                raise EngineError(f"building the Kestra launcher failed (mvn exit {result.returncode}):\n{tail}")
            (LIBS / ".fetched").touch()
            ENGINE_JAR.touch()
    return Path(f"{ENGINE_JAR}{os.pathsep}{LIBS}/*")


def _venv_bin() -> Path:
    if sys.prefix != sys.base_prefix:
        return Path(sys.executable).parent
    return ROOT / ".venv" / "bin"


def task_environment(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of the engine's JVM, which the Process task runner hands to each task."""
    env = dict(os.environ if base is None else base)
    venv_bin = _venv_bin()
    python = str(venv_bin / "python")
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = python
    env["PYSPARK_DRIVER_PYTHON"] = python
    env["PIPELINE_JARS"] = str(ROOT / "infra" / "spark" / "jars")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_source(flow: Union[str, Path]) -> str:
    if isinstance(flow, Path) or (isinstance(flow, str) and "\n" not in flow and flow.endswith((".yml", ".yaml"))):
        return Path(flow).read_text()
    return str(flow)


class KestraEngine:
    """One JVM running Kestra's executor, worker controller, worker and indexer, on an in-memory
    database and a local storage folder under ``home``; stopped by :meth:`stop` (or ``with``)."""

    def __init__(
        self,
        home: Optional[Union[str, Path]] = None,
        java_home: Optional[Path] = None,
        env: Optional[Mapping[str, str]] = None,
        heap: str = "1g",
        worker_threads: int = 4,
    ):
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="kestra-engine-"))
        self.java_home = java_home
        self.env = task_environment(env)
        self.heap = heap
        self.worker_threads = worker_threads
        self.log_path = self.home / "engine.log"
        self.start_seconds: Optional[float] = None
        self._process: Optional[subprocess.Popen] = None
        self._ids = itertools.count(1)
        self._pending: Dict[int, Future] = {}
        self._lock = threading.Lock()
        self._events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self._reader: Optional[threading.Thread] = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 240.0) -> "KestraEngine":
        java_home = self.java_home or find_java()
        classpath = build(java_home)
        self.home.mkdir(parents=True, exist_ok=True)
        command = [
            str(java_home / "bin" / "java"),
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-cp",
            str(classpath),
            "dataplatform.kestra.Launcher",
            "--home",
            str(self.home),
            "--controller-port",
            str(free_port()),
            "--worker-threads",
            str(self.worker_threads),
        ]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                cwd=str(ROOT),
                text=True,
                bufsize=1,
            )
        self._reader = threading.Thread(target=self._read_answers, name="kestra-engine-reader", daemon=True)
        self._reader.start()
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            raise EngineError(f"Kestra's engine did not start within {timeout:.0f} s{self._log_tail()}") from None
        if event.get("event") != "ready":
            self._kill()
            raise EngineError(f"Kestra's engine failed to start: {event.get('message', event)}{self._log_tail()}")
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.stdin is not None and process.poll() is None:
            try:
                process.stdin.write(json.dumps({"op": "stop"}) + "\n")
                process.stdin.flush()
                process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()  # SIGKILL cannot be refused: waiting on it needs no bound
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._fail_pending(EngineError("Kestra's engine stopped"))
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "KestraEngine":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\nlast lines of {self.log_path}:\n" + "\n".join(tail) if tail else ""

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _read_answers(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            request_id = answer.pop("id", None)
            if request_id is None:
                self._events.put(answer)
                continue
            with self._lock:
                future = self._pending.pop(request_id, None)
            if future is not None:
                future.set_result(answer)
        self._events.put({"event": "exited", "message": f"the engine's JVM exited (code {process.wait()})"})
        self._fail_pending(EngineError(f"Kestra's engine exited; its log: {self.log_path}"))

    def _fail_pending(self, error: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _send(self, request: Dict[str, Any]) -> Future:
        if not self.running:
            raise EngineError("Kestra's engine is not running")
        future: Future = Future()
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
            stdin = self._process.stdin if self._process is not None else None
            assert stdin is not None, "the engine was started with a pipe for its requests"
            stdin.write(json.dumps(dict(request, id=request_id)) + "\n")
            stdin.flush()
        return future

    # -- requests ---------------------------------------------------------------------------

    def validate(self, flow: Union[str, Path], timeout: float = 120.0) -> Validation:
        """Kestra's validation (FlowService.validate) of a flow: a path or its YAML source, as it
        is (swap the types first with :func:`engine_source` to validate what the engine runs)."""
        answer = self._send({"op": "validate", "source": _read_source(flow)}).result(timeout)
        if "error" in answer:
            raise EngineError(answer.get("message"))
        return Validation(bool(answer["ok"]), list(answer.get("errors") or []), list(answer.get("warnings") or []))

    def submit(
        self, flow: Union[str, Path], inputs: Optional[Mapping[str, Any]] = None, timeout: float = 3600.0
    ) -> Future:
        """Start one execution; the future's result is an :class:`Execution` (or it raises
        :class:`FlowRejected`, :class:`BadInput` or :class:`EngineError`)."""
        source = engine_source(_read_source(flow))
        request = {"op": "run", "source": source, "inputs": dict(inputs or {}), "timeoutSeconds": timeout}
        answered = self._send(request)
        result: Future = Future()

        def convert(done: Future) -> None:
            try:
                result.set_result(_execution(done.result()))
            except BaseException as error:  # noqa: BLE001 (handed to the caller through the future)
                result.set_exception(error)

        answered.add_done_callback(convert)
        return result

    def run(
        self, flow: Union[str, Path], inputs: Optional[Mapping[str, Any]] = None, timeout: float = 3600.0
    ) -> Execution:
        """Run one execution of ``flow`` (a path or YAML source) to its end."""
        return self.submit(flow, inputs, timeout).result(timeout + 120)


def _execution(answer: Dict[str, Any]) -> Execution:
    error = answer.get("error")
    if error == "invalid-flow":
        raise FlowRejected(answer.get("message"))
    if error == "bad-input":
        raise BadInput(answer.get("message"))
    if error:
        raise EngineError(answer.get("message"))
    return Execution(
        id=answer["executionId"],
        state=answer["state"],
        task_runs=[TaskRun(run["taskId"], run["state"], run["attempts"]) for run in answer["taskRuns"]],
        outputs=dict(answer.get("outputs") or {}),
        seconds=float(answer.get("seconds") or 0.0),
        logs=list(answer.get("logs") or []),
        state_history=[
            StateChange(change["state"], datetime.fromisoformat(change["date"]))
            for change in answer.get("stateHistory") or []
        ],
        log_levels=dict(answer.get("logLevels") or {}),
    )


# -- command line -------------------------------------------------------------------------------


def _parse_inputs(items: Sequence[str]) -> Dict[str, str]:
    inputs: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"--input {item!r}: expected NAME=VALUE")
        inputs[name.strip()] = value
    return inputs


def _print_execution(execution: Execution) -> None:
    width = max([len(run.task_id) for run in execution.task_runs] + [8])
    for run in execution.task_runs:
        plural = "" if run.attempts == 1 else "s"
        print(f"{run.task_id:<{width}}  {run.state:<9} {run.attempts} attempt{plural}")
    for name, value in execution.outputs.items():
        print(f"output {name} = {value}")
    if execution.state != "SUCCESS":
        for entry in [entry for entry in execution.logs if entry.get("level") == "ERROR"][-10:]:
            print(f"[{entry.get('taskId')}] {entry.get('message')}")
    print(f"execution {execution.id}: {execution.state} in {execution.seconds:.1f} s")


def parser() -> argparse.ArgumentParser:
    """run_flow.py's command line."""
    parser = argparse.ArgumentParser(
        description="Run a Kestra flow once on Kestra's own engine (no server, no UI).",
        epilog="exit codes: 0 SUCCESS, 1 another final state or an engine failure, "
        "2 a bad input or a flow Kestra rejects",
    )
    parser.add_argument("flow", type=Path, help="the flow's YAML file")
    parser.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input of the flow (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object: state, taskRuns, outputs")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, metavar="SECONDS", help="for the execution (default 3600)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        inputs = _parse_inputs(args.inputs)
        source = args.flow.read_text()
    except BadInput as error:
        print(f"run_flow: {error}", file=sys.stderr)
        return EXIT_REJECTED
    except OSError as error:
        print(f"run_flow: cannot read the flow {args.flow}: {error.strerror}", file=sys.stderr)
        return EXIT_REJECTED

    try:
        with KestraEngine() as engine:
            if not args.json:
                print(f"Kestra engine started in {engine.start_seconds:.1f} s", file=sys.stderr)
            execution = engine.run(source, inputs, timeout=args.timeout)
    except FlowRejected as error:
        print(f"run_flow: Kestra rejects {args.flow}: {error}", file=sys.stderr)
        return EXIT_REJECTED
    except BadInput as error:
        print(f"run_flow: bad input: {error}", file=sys.stderr)
        return EXIT_REJECTED
    except EngineError as error:
        print(f"run_flow: {error}", file=sys.stderr)
        return EXIT_FAILED

    if args.json:
        print(json.dumps(execution.summary()))
    else:
        _print_execution(execution)
    return EXIT_SUCCESS if execution.state == "SUCCESS" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
