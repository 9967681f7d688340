"""What a new user meets first: outputs any reader loads, Kafka in a notebook,
Kafka's own tools, the README's commands as written, a CLI that explains itself."""

import decimal
import glob
import json
import os
import re
import subprocess
import sys
import time

import pandas
import pytest

from bench.bench_suite import demo_steps
from infra.kafka.broker import free_port
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.session import CHECKOUT_JARS, JARS_ENV, connector_jars
from pipeline_lib.sources import build_source
from pipeline_lib.transforms import parse_json, split_valid
from tests.conftest import send_raw
from tests.helpers import ROOT, job, topic_records
from tests.integration.test_pipeline import produce, stream

QUARANTINE_COLUMNS = ["payload", "payload_base64", "topic", "partition", "offset", "kafka_timestamp", "headers", "reason"]


def quarantine_with_every_kind(spark, bootstrap, topic, folder):
    send_raw(bootstrap, topic, [b'{"id": 1, "value": 2}', b"not json", None, b"\xff\xfe"])
    produce(bootstrap, topic, 5, start_id=10)  # a batch with no rejected row comes next
    stream(spark, bootstrap, topic, folder, **{"source.max_offsets_per_trigger": 4})


def test_quarantine_has_every_documented_column_for_pandas_and_no_empty_file(spark, bootstrap, topic, tmp_path):
    quarantine_with_every_kind(spark, bootstrap, topic, tmp_path)

    files = glob.glob(str(tmp_path / "quarantine" / "*.json"))
    assert files and all(os.path.getsize(name) > 0 for name in files)
    frame = pandas.concat([pandas.read_json(name, lines=True) for name in files])
    assert list(frame.columns) == QUARANTINE_COLUMNS
    assert sorted(frame["reason"]) == ["invalid JSON", "payload is not valid UTF-8", "payload is null"]
    assert frame["payload_base64"].notna().sum() == 1


def test_outputs_load_in_duckdb_with_their_types(spark, bootstrap, topic, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    quarantine_with_every_kind(spark, bootstrap, topic, tmp_path)

    rows = duckdb.sql(f"select id, timestamp from read_csv('{tmp_path}/output/*.csv') order by id").fetchall()
    reasons = duckdb.sql(f"select reason, \"offset\" from read_json('{tmp_path}/quarantine/*.json') order by \"offset\"").fetchall()

    assert [row[0] for row in rows] == [1, 10, 11, 12, 13, 14]
    assert rows[0][1] is None and all(isinstance(row[1], (float, decimal.Decimal)) and row[1] > 1e9 for row in rows[1:])
    assert [reason for reason, _ in reasons] == ["invalid JSON", "payload is null", "payload is not valid UTF-8"]


def test_csv_timestamps_are_plain_decimals(spark, bootstrap, topic, tmp_path):
    send_raw(bootstrap, topic, [b'{"id": 1, "value": 2, "timestamp": 1795778866.829}'])

    stream(spark, bootstrap, topic, tmp_path)

    (name,) = glob.glob(str(tmp_path / "output" / "*.csv"))
    assert open(name).read().splitlines() == ["id,value,timestamp,processed_value", "1,2,1795778866.829,4"]


def test_the_connector_jars_of_a_checkout_are_found_without_settings(monkeypatch):
    monkeypatch.delenv(JARS_ENV, raising=False)

    jars = connector_jars()

    assert jars and all(jar.startswith(str(CHECKOUT_JARS)) for jar in jars)
    assert any("spark-sql-kafka" in jar for jar in jars)


def test_a_batch_read_of_the_topic_has_the_stream_columns_and_keeps_kafka_timestamp(spark, bootstrap, topic):
    send_raw(bootstrap, topic, [b'{"id": 1, "value": 2, "timestamp": 5.5}', b"oops"])
    source = build_source({"type": "kafka"}, KafkaSettings(bootstrap_servers=bootstrap, topic=topic))

    raw = source.read_batch(spark)
    good, rejected = split_valid(raw.transform(parse_json()))

    assert raw.columns == ["value", "topic", "partition", "offset", "kafka_timestamp", "headers"]
    assert [(row["id"], row["timestamp"]) for row in good.collect()] == [(1, 5.5)]
    assert rejected.first()["kafka_timestamp"] is not None


def test_kafkas_own_tools_work_against_the_broker(bootstrap, topic):
    tools = ROOT / "infra" / "kafka" / "bin"
    created = subprocess.run([str(tools / "kafka-topics"), "--bootstrap-server", bootstrap, "--create", "--topic", topic,
                              "--partitions", "1"], capture_output=True, text=True, timeout=120)
    produced = subprocess.run([str(tools / "kafka-console-producer"), "--bootstrap-server", bootstrap, "--topic", topic],
                              input='{"id": 7, "value": 1}\n', capture_output=True, text=True, timeout=120)
    consumed = subprocess.run([str(tools / "kafka-console-consumer"), "--bootstrap-server", bootstrap, "--topic", topic,
                               "--from-beginning", "--max-messages", "1", "--timeout-ms", "30000"],
                              capture_output=True, text=True, timeout=120)

    assert created.returncode == 0 and f"Created topic {topic}" in created.stdout, created.stderr
    assert produced.returncode == 0, produced.stderr
    assert consumed.stdout.strip() == '{"id": 7, "value": 1}', consumed.stderr


def readme_command(prefix):
    """The command of docs/jobs.md that starts with ``prefix``, its continuation lines joined."""
    text = (ROOT / "docs" / "jobs.md").read_text()
    match = re.search(rf"^{re.escape(prefix)}.*?(?<!\\)$", text, re.M | re.S)
    assert match, f"no command starting with {prefix!r} in docs/jobs.md"
    return re.sub(r"\s*\\\n\s*", " ", match.group(0))


def plain_shell_environment():
    """A new shell's environment: no virtualenv on PATH, none of the variables the Makefile sets."""
    venv_bin = os.path.dirname(sys.executable)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PIPELINE_JARS", "SPARK_HOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != venv_bin)
    return env


@pytest.mark.slow
def test_the_readme_spark_submit_command_works_as_written(bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 20)
    command = readme_command("infra/spark/submit jobs/stream.py")
    command = re.sub(r"\s*\[.*$", "", command)  # the optional flags in brackets
    command = command.replace("127.0.0.1:9092", bootstrap).replace("input-data", topic)
    for name in ("out", "chk", "quarantine"):
        command = command.replace(f" {name} ", f" {tmp_path / name} ").rstrip()

    result = subprocess.run(command, shell=True, cwd=ROOT, env=plain_shell_environment(), capture_output=True,
                            text=True, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 20 rows written, 0 quarantined" in result.stdout
    assert " INFO " not in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_the_stream_job_runs_from_a_checkout_without_any_setting(bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 3)

    result = subprocess.run(
        [sys.executable, "jobs/stream.py", "--bootstrap-servers", bootstrap, "--topic", topic,
         "--output", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "c"), "--quarantine", str(tmp_path / "q")],
        cwd=ROOT, env=plain_shell_environment(), capture_output=True, text=True, timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].startswith("done: 3 rows written, 0 quarantined")
    assert "::{" not in result.stdout, "Kestra's output lines appear only under Kestra"
    noise = [line for line in result.stderr.splitlines() if line.strip() and "incubator modules" not in line]
    assert noise == [], noise


def test_producer_runs_one_after_another_never_reuse_an_id(bootstrap, topic):
    first = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "20")
    second = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "20", "--partitions", "3")

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    ids = sorted(json.loads(message.value)["id"] for message in topic_records(bootstrap, topic))
    assert ids == list(range(1, 41))


def test_help_lists_defaults_environment_and_exit_codes():
    result = job("stream", "--help", timeout=60)

    assert result.returncode == 0
    for text in ("--bootstrap-servers HOST:PORT", "(default 127.0.0.1:9092)", "--checkpoint DIR", "(default checkpoint)",
                 "--connect-timeout SECONDS", "KAFKA_SASL_PASSWORD", "exit codes: 0 done"):
        assert text in result.stdout, text
    assert "KAFKA.BOOTSTRAP_SERVERS" not in result.stdout and "SOURCE.TYPE" not in result.stdout


def test_connect_timeout_flag_bounds_the_wait_for_a_missing_broker(tmp_path):
    started = time.monotonic()
    result = job("stream", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--connect-timeout", "3",
                 "--output", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "c"), "--quarantine", str(tmp_path / "q"),
                 timeout=120)

    assert result.returncode == 1
    assert "within 3s" in result.stderr
    assert time.monotonic() - started < 60


def test_the_library_pages_examples_run_as_written(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)
    stream(spark, bootstrap, topic, tmp_path)
    page = (ROOT / "docs" / "library.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", page, re.S)
    namespace = {}

    for example in examples:
        example = example.replace("127.0.0.1:9092", bootstrap).replace('"input-data"', repr(topic))
        exec(compile(example.replace('"output"', repr(str(tmp_path / "output"))), "docs/library.md", "exec"), namespace)

    assert len(examples) == 2
    assert namespace["raw"].count() == 5 and namespace["good"].count() == 5



DEMO_TOPIC = "getting-started-demo"


@pytest.fixture(scope="module")
def demo_runs(kafka, tmp_path_factory):
    """The quick start's first command on the session's broker (so it starts none), run twice,
    its output and errors in one text as a terminal shows them, and the folder it wrote."""
    folder = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PY=sys.executable, KAFKA_PORT=str(kafka.port), DEMO_DIR=str(folder), DEMO_TOPIC=DEMO_TOPIC)
    runs = [
        subprocess.run(["bash", "infra/demo.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:]
    return runs, folder


@pytest.mark.slow
def test_make_demo_twice_prints_the_rows_and_the_second_run_adds_the_next_20(demo_runs, spark):
    runs, folder = demo_runs

    for run in runs:
        assert f"sent 20 records to {DEMO_TOPIC}" in run.stdout
        assert "done: 20 rows written, 0 quarantined" in run.stdout
    shown = [line for line in runs[1].stdout.splitlines() if re.match(r"\|\d+ +\|", line)]
    assert [int(line.split("|")[1]) for line in shown] == list(range(1, 41))
    assert all(re.fullmatch(r"\|\d+ +\|\d+ +\|\d+\.\d+ *\|\d+ +\|", line) for line in shown), shown[:3]  # plain decimals
    assert sorted(int(row.id) for row in spark.read.csv(str(folder / "output"), header=True).collect()) == list(range(1, 41))


@pytest.mark.slow
def test_make_bench_finds_every_step_of_make_demo_in_its_output(demo_runs):
    """make bench times make demo's steps by the lines it prints: each line a step ends at is there."""
    lines = [(float(index), text) for index, text in enumerate(demo_runs[0][0].stdout.splitlines())]

    steps = demo_steps(lines, total=float(len(lines)))

    assert all(seconds is not None for seconds in steps.values()), steps
    assert steps["batch"] > 0
