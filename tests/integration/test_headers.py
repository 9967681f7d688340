"""Kafka headers of a record (a trace id): to the output with include_headers, always to the quarantine."""

from chispa import assert_df_equality

from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.run import run_pipeline
from tests.conftest import send_raw

TRACE = [("trace_id", b"4bf92f3577b34da6"), ("tenant", b"eu-1")]
TRACE_TEXT = '[{"key":"trace_id","value":"4bf92f3577b34da6"},{"key":"tenant","value":"eu-1"}]'


def run_with_headers(spark, bootstrap, topic, folder, **source):
    send_raw(bootstrap, topic, [b'{"id": 1, "value": 75, "timestamp": 1715181600.123}', b"{not json"], headers=TRACE)
    send_raw(bootstrap, topic, [b'{"id": 2, "value": 5, "timestamp": 1715181600.5}'])
    overrides = {
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topic": topic,
        "output.path": str(folder / "output"),
        "quarantine.path": str(folder / "quarantine"),
        "checkpoint": str(folder / "checkpoint"),
        **{f"source.{name}": value for name, value in source.items()},
    }
    run_pipeline(spark, load_pipeline_config(overrides=overrides, environ={}), emit=lambda line: None)
    output = spark.read.csv(str(folder / "output"), header=True).orderBy("id")
    quarantine = spark.read.json(str(folder / "quarantine")).select("offset", "headers", "reason")
    return output, quarantine


def test_include_headers_writes_each_records_kafka_headers_as_a_column_of_the_output(spark, bootstrap, topic, tmp_path):
    output, _ = run_with_headers(spark, bootstrap, topic, tmp_path, include_headers=True)

    expected = spark.createDataFrame(
        [("1", "75", "1715181600.123", "150", TRACE_TEXT), ("2", "5", "1715181600.5", "10", None)],
        "id string, value string, timestamp string, processed_value string, headers string",
    )
    assert_df_equality(output, expected, ignore_nullable=True)


def test_without_include_headers_the_output_keeps_the_seeds_columns(spark, bootstrap, topic, tmp_path):
    output, _ = run_with_headers(spark, bootstrap, topic, tmp_path)

    assert output.columns == ["id", "value", "timestamp", "processed_value"]


def test_the_quarantine_always_keeps_a_rejected_records_headers(spark, bootstrap, topic, tmp_path):
    _, quarantine = run_with_headers(spark, bootstrap, topic, tmp_path)

    expected = spark.createDataFrame([(1, TRACE_TEXT, "invalid JSON")], "offset long, headers string, reason string")
    assert_df_equality(quarantine, expected, ignore_nullable=True)
