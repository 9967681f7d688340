"""The project's task type ``dataplatform.kestra.ShellCommands`` on Kestra's own engine: the
level at which each line a command prints on stderr is logged (Kestra's script tasks log every
one at ERROR)."""

from __future__ import annotations

import shlex

import pytest
import yaml

from infra.kestra.run_flow import ENGINE_COMMANDS_TYPE

pytestmark = pytest.mark.kestra

# (what the command prints on stderr, the level Kestra logs it at), in the order printed: some
# lines take the level of the record they continue.
STDERR_LINES = [
    ("error: cannot reach Kafka at 127.0.0.1:1", "ERROR"),
    ("26/12/01 09:00:00 WARN Utils: Your hostname resolves to a loopback address", "WARN"),
    ("09:00:00 INFO SparkContext: Running Spark version 4.2.0", "INFO"),
    ("WARN NativeCodeLoader: Unable to load native-hadoop library", "WARN"),
    ("WARNING: Using incubator modules: jdk.incubator.vector", "WARN"),
    ("/app/jobs/stream.py:3: DeprecationWarning: old API", "WARN"),
    ('  warnings.warn("old API")', "WARN"),
    ("26/12/01 09:00:01 ERROR Executor: Exception in task 0.0", "ERROR"),
    ("java.lang.RuntimeException: boom", "ERROR"),
    ("\tat dataplatform.Job.run(Job.java:1)", "ERROR"),
    ("Traceback (most recent call last):", "ERROR"),
    ('  File "jobs/stream.py", line 1, in <module>', "ERROR"),
    ("ValueError: bad value", "ERROR"),
    ("Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties", "WARN"),
    ("Exception in thread \"main\" org.apache.spark.SparkException: Master must start with local", "ERROR"),
]

FLOW = yaml.safe_dump({
    "id": "stderr-levels",
    "namespace": "dataplatform.test",
    "tasks": [{
        "id": "lines",
        "type": ENGINE_COMMANDS_TYPE,
        "taskRunner": {"type": "io.kestra.plugin.core.runner.Process"},
        "commands": [
            "echo 'on stdout'",
            "printf '%s\\n' " + " ".join(shlex.quote(line) for line, _ in STDERR_LINES) + " >&2",
            """echo '::{"outputs": {"on_stderr": 7}}::' >&2""",
        ],
    }],
    "outputs": [{"id": "on_stderr", "type": "INT", "value": "{{ outputs.lines.vars.on_stderr }}"}],
}, sort_keys=False)


@pytest.fixture(scope="module")
def printed(kestra):
    return kestra.run(FLOW, timeout=300)


def test_the_command_succeeds(printed):
    assert printed.state == "SUCCESS", printed.logs


@pytest.mark.parametrize("line, level", STDERR_LINES, ids=[f"{index:02d}-{level}" for index, (_, level) in enumerate(STDERR_LINES)])
def test_a_stderr_line_is_logged_at_the_level_of_what_it_is(printed, line, level):
    assert [entry["level"] for entry in printed.logs if entry["message"] == line] == [level]


def test_stdout_is_logged_at_info(printed):
    assert "on stdout" in printed.logs_of("lines", "INFO")


def test_a_kestra_outputs_line_on_stderr_is_an_output_not_a_log(printed):
    assert printed.outputs == {"on_stderr": 7}
    assert not [entry for entry in printed.logs if "on_stderr" in entry["message"]]
