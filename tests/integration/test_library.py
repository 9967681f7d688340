"""The library in use: the Kafka and memory sinks, expectations, a windowed pipeline, the
pipeline files in pipelines/ and a plugin package installed from tests/plugin_example."""

import json
import shutil
import sys

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.run import run_pipeline
from pipeline_lib.sinks.memory import MemorySink
from tests.conftest import send_raw
from tests.helpers import ROOT, job, run, stream_in_process, topic_records
from tests.integration.test_pipeline import produce, read_csv, read_quarantine

EPOCH = 1715181600  # 2024-05-08 15:20:00 UTC, a multiple of 10 seconds


def configured(bootstrap, topic, folder, path=None, **overrides):
    """A configuration on the test broker with checkpoint and quarantine under ``folder``."""
    return load_pipeline_config(
        path,
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic,
            "quarantine.path": str(folder / "quarantine"), "checkpoint": str(folder / "checkpoint"), **overrides,
        },
        environ={},
    )


@pytest.mark.slow
def test_kafka_sink_writes_every_row_once_keyed_by_id_across_a_restart(spark, bootstrap, topic, tmp_path):
    out_topic = f"{topic}-out"
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=out_topic), 1, 30)
    produce(bootstrap, topic, 20)
    config = configured(bootstrap, topic, tmp_path, **{"output.format": "kafka", "output.topic": out_topic})
    first = run_pipeline(spark, config, emit=lambda line: None)
    produce(bootstrap, topic, 10, start_id=21)

    restarted = job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--format", "kafka", "--output-topic", out_topic,
        "--quarantine", str(tmp_path / "quarantine"), "--checkpoint", str(tmp_path / "checkpoint"), timeout=300,
    )

    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert (first.written, "done: 10 rows written, 0 quarantined" in restarted.stdout) == (20, True)
    messages = topic_records(bootstrap, out_topic)
    # At-least-once: a reader keeps the last record per key; a clean restart replays nothing.
    latest = {message.key: json.loads(message.value) for message in messages}
    assert sorted(int(key) for key in latest) == list(range(1, 31))
    assert len(messages) == 30
    assert all(
        sorted(record) == ["id", "processed_value", "timestamp", "value"] and record["processed_value"] == 2 * record["value"]
        and int(key) == record["id"]
        for key, record in latest.items()
    )


def test_memory_sink_serves_the_rows_as_a_table(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 15)
    MemorySink.clear("memory_rows")
    config = configured(
        bootstrap, topic, tmp_path,
        **{"output.format": "memory", "output.name": "memory_rows", "source.max_offsets_per_trigger": 5},
    )

    summary = run_pipeline(spark, config, emit=lambda line: None)

    table = spark.table("memory_rows")
    assert summary.batches == 3
    assert table.columns == ["id", "value", "timestamp", "processed_value"]
    assert sorted(row["id"] for row in table.collect()) == list(range(1, 16))


def _expectations(*items):
    return ["add_processed_value"] + [
        {"name": "expect", "options": {"name": name, "condition": condition, "on_violation": action}}
        for name, condition, action in items
    ]


def test_expectations_warn_drop_and_quarantine_and_are_counted(spark, bootstrap, topic, tmp_path):
    values = [5, 150, -1, 50, 101]
    send_raw(bootstrap, topic, [json.dumps({"id": i, "value": v, "timestamp": 1.0}).encode() for i, v in enumerate(values, 1)] + [b'{"id": 9}'])
    lines = []
    config = configured(
        bootstrap, topic, tmp_path,
        **{
            "output.path": str(tmp_path / "output"),
            "transforms": _expectations(
                ("under_100", "value < 100", "warn"), ("non_negative", "value >= 0", "drop"),
                ("at_most_120", "value <= 120", "quarantine"),
            ),
        },
    )

    summary = run_pipeline(spark, config, emit=lines.append)

    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == [1, 4, 5]
    quarantine = sorted((row["offset"], row["reason"]) for row in read_quarantine(spark, tmp_path).collect())
    assert quarantine == [(1, "expectation 'at_most_120' failed"), (5, "missing required field 'value'")]
    assert summary.metrics == {
        "expectation 'under_100' (warn) violations": 2,
        "expectation 'non_negative' (drop) violations": 1,
        "expectation 'at_most_120' (quarantine) violations": 1,
    }
    assert (summary.written, summary.quarantined) == (3, 2)
    assert "3 written, 2 quarantined; expectation 'under_100' (warn) violations: 2" in lines[0]
    assert summary.line().endswith("; expectation 'at_most_120' (quarantine) violations: 1")


def _write_config(tmp_path, transforms):
    path = tmp_path / "pipeline.yml"
    path.write_text(json.dumps({"transforms": transforms}))  # JSON is YAML
    return str(path)


@pytest.mark.slow
def test_a_failing_expectation_stops_the_job_naming_it_and_the_offsets(bootstrap, topic, tmp_path):
    send_raw(bootstrap, topic, [json.dumps({"id": i, "value": v}).encode() for i, v in [(1, 5), (2, 7), (3, -4), (4, 8)]])

    result = job(
        "stream", "--config", _write_config(tmp_path, _expectations(("non_negative", "value >= 0", "fail"))),
        "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
        "--quarantine", str(tmp_path / "quarantine"), "--checkpoint", str(tmp_path / "checkpoint"), timeout=300,
    )

    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1
    assert f"expectation 'non_negative' failed at topic {topic}, partition 0, offset 2: value >= 0" in errors[0]
    assert not list((tmp_path / "output").glob("*.csv"))


def test_an_expectation_that_is_not_sql_or_names_no_column_is_a_config_error(spark, tmp_path):
    for condition, problem in [("value >", "PARSE_SYNTAX_ERROR"), ("nope > 1", "`nope` cannot be resolved")]:
        result = stream_in_process(
            "--config", _write_config(tmp_path, _expectations(("bad", condition, "warn"))),
            "--output", str(tmp_path / "output"), "--checkpoint", str(tmp_path / "checkpoint"),
        )

        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2, result.stderr[-3000:]
        assert errors and errors[0].startswith(f"error: transforms[1]: expectation 'bad': condition '{condition}' is not valid")
        assert problem in errors[0]
        assert "reading" not in result.stdout and not (tmp_path / "checkpoint").exists()


def test_windowed_stats_counts_each_window_once_and_leaves_out_late_records(spark, bootstrap, topic, tmp_path):
    # Spark drops a row as late by the watermark of the batch before the one that evicts by:
    # a watermark set by batch 0 drops late rows from batch 2 on.
    records = [
        (1, 10, 1), (2, 30, 3), (3, 7, 12), (4, 1, 100),  # batch 0; the watermark becomes 100 - 30 = 70
        (5, 2, 75), (6, 3, 200), (7, 4, 171), (8, 5, 172),  # batch 1; it becomes 170: windows ending by 170 are final
        (9, 50, 5), (10, 99, 15), (11, 6, 173), (12, 7, 174),  # batch 2: 9 and 10 are past the watermark of 70
    ]
    payloads = [json.dumps({"id": i, "value": v, "timestamp": EPOCH + s}).encode() for i, v, s in records]
    send_raw(bootstrap, topic, payloads + [b"{not json"])
    config = configured(
        bootstrap, topic, tmp_path, str(ROOT / "pipelines" / "windowed-stats.yml"),
        **{"output.path": str(tmp_path / "output"), "source.max_offsets_per_trigger": 4},
    )

    summary = run_pipeline(spark, config, emit=lambda line: None)

    schema = "window_start timestamp, window_end timestamp, count long, avg_value double, max_value int"
    windows = spark.read.option("header", "true").schema(schema).csv(str(tmp_path / "output")).select(
        (F.unix_timestamp("window_start") - EPOCH).alias("start"), (F.unix_timestamp("window_end") - EPOCH).alias("end"),
        "count", "avg_value", "max_value",
    )
    assert sorted(tuple(row) for row in windows.collect()) == [
        (0, 10, 2, 20.0, 30), (10, 20, 1, 7.0, 7), (70, 80, 1, 2.0, 2), (100, 110, 1, 1.0, 1),
    ]
    assert (summary.written, summary.quarantined) == (4, 1)
    assert [row["reason"] for row in read_quarantine(spark, tmp_path).collect()] == ["invalid JSON"]


def test_pipeline_file_gives_the_rows_of_the_flag_only_job(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 20)
    send_raw(bootstrap, topic, [b"{not json"])

    def stream_job(name, *extra):
        folder = tmp_path / name
        result = stream_in_process(
            *extra, "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(folder / "output"),
            "--quarantine", str(folder / "quarantine"), "--checkpoint", str(folder / "checkpoint"),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return folder

    flags_only = stream_job("flags")
    from_file = stream_job("file", "--config", str(ROOT / "pipelines" / "simple-data-pipeline.yml"))

    assert_df_equality(read_csv(spark, from_file), read_csv(spark, flags_only), ignore_row_order=True)
    assert_df_equality(
        read_quarantine(spark, from_file).drop("kafka_timestamp"), read_quarantine(spark, flags_only).drop("kafka_timestamp"),
        ignore_row_order=True,
    )
    assert read_csv(spark, from_file).count() == 20


@pytest.mark.slow
def test_plugin_package_adds_a_transform_and_a_sink_through_entry_points(tmp_path):
    plugin = tmp_path / "plugin"
    shutil.copytree(ROOT / "tests" / "plugin_example", plugin)  # the build writes beside the sources
    pip = [sys.executable, "-m", "pip"]
    installed = run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(plugin)], timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        (incoming / "a.json").write_text('{"id": 1, "value": 20}\n{"id": 2, "value": 120}\n')
        config = tmp_path / "plugin.yml"
        config.write_text(
            "source: {type: files, path: " + json.dumps(str(incoming)) + "}\n"
            "transforms: [add_processed_value, {name: clip_value, options: {high: 50}}]\n"
            "output: {format: row_log, path: " + json.dumps(str(tmp_path / "rows")) + "}\n"
            "quarantine: {path: " + json.dumps(str(tmp_path / "quarantine")) + "}\n"
            "checkpoint: " + json.dumps(str(tmp_path / "checkpoint")) + "\n"
        )

        result = job("stream", "--config", str(config), timeout=300)
        listed = job("stream", "--list-sinks", "--list-transforms", timeout=120)
    finally:
        uninstalled = run([*pip, "uninstall", "-y", "pipeline-plugin-example"], timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "writing row_log to" in result.stdout
    rows = [json.loads(line) for path in sorted((tmp_path / "rows").glob("batch-*.jsonl")) for line in path.read_text().splitlines()]
    assert sorted((row["id"], row["value"], row["processed_value"]) for row in rows) == [(1, 20, 40), (2, 50, 240)]
    assert "row_log: columns=None, path (required)" in listed.stdout
    assert "clip_value(low=0, high=100, column='value')" in listed.stdout
    assert uninstalled.returncode == 0, uninstalled.stderr
