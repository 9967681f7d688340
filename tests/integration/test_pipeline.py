"""Produce -> real Kafka -> Spark Structured Streaming -> CSV, exactly once."""

import json
import socket
import threading
import time

import pytest
from pyspark.sql import functions as F

from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.producer import load_producer_config, send_records
from pipeline_lib.run import run_pipeline
from tests.conftest import send_raw
from tests.helpers import ROOT, job, spark_submit, topic_records

OUTPUT_SCHEMA = "id long, value int, timestamp double, processed_value long"


def produce(bootstrap, topic, count, start_id=1, partitions=1):
    config = load_producer_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "count": count, "start_id": start_id,
            "partitions": partitions,
        },
        environ={},
    )
    assert send_records(config, emit=lambda line: None) == count


def run_in(spark, folder, stop_event=None, **overrides):
    """Run the pipeline in-process with output, quarantine and checkpoint under ``folder``."""
    config = load_pipeline_config(
        overrides={
            "output.path": str(folder / "output"),
            "quarantine.path": str(folder / "quarantine"),
            "checkpoint": str(folder / "checkpoint"),
            **overrides,
        },
        environ={},
    )
    return run_pipeline(spark, config, emit=lambda line: None, stop_event=stop_event)


def stream(spark, bootstrap, topic, folder, **overrides):
    return run_in(spark, folder, **{"kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, **overrides})


def read_csv(spark, folder):
    return spark.read.option("header", "true").schema(OUTPUT_SCHEMA).csv(str(folder / "output"))


def read_quarantine(spark, folder):
    return spark.read.json(str(folder / "quarantine"))


def assert_ids_once(df, expected_ids):
    ids = [row["id"] for row in df.select("id").collect()]
    assert sorted(ids) == list(expected_ids)


def test_twenty_records_land_once_each_with_processed_value(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 20)

    summary = stream(spark, bootstrap, topic, tmp_path)

    output = read_csv(spark, tmp_path)
    assert (summary.written, summary.quarantined) == (20, 0)
    assert_ids_once(output, range(1, 21))
    assert output.where(F.col("processed_value") != F.col("value") * 2).count() == 0
    assert output.where(F.col("timestamp").isNull() | F.col("value").isNull()).count() == 0


def test_restart_without_new_data_writes_nothing(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 20)
    stream(spark, bootstrap, topic, tmp_path)

    again = stream(spark, bootstrap, topic, tmp_path)

    assert again.written == 0
    assert_ids_once(read_csv(spark, tmp_path), range(1, 21))


def test_restart_after_new_data_adds_only_the_new_records(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 20)
    stream(spark, bootstrap, topic, tmp_path)
    produce(bootstrap, topic, 30, start_id=21)

    second = stream(spark, bootstrap, topic, tmp_path)

    assert second.written == 30
    assert_ids_once(read_csv(spark, tmp_path), range(1, 51))


def test_small_micro_batches_still_write_each_record_once(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 45)

    summary = stream(spark, bootstrap, topic, tmp_path, **{"source.max_offsets_per_trigger": 10})

    assert summary.batches == 5
    assert_ids_once(read_csv(spark, tmp_path), range(1, 46))


def test_records_spread_over_partitions_all_arrive(spark, bootstrap, topic, tmp_path):
    config = load_producer_config(
        overrides={"kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "count": 60, "partitions": 3},
        environ={},
    )
    send_records(config, emit=lambda line: None)

    stream(spark, bootstrap, topic, tmp_path)

    assert_ids_once(read_csv(spark, tmp_path), range(1, 61))


def test_malformed_messages_are_quarantined_with_reason_and_coordinates(spark, bootstrap, topic, tmp_path):
    payloads = [
        b'{"id": 1, "value": 10, "timestamp": 1.0}',
        b"{not json",
        b'{"id": 2}',
        b'{"id": 3, "value": "75"}',
        b'{"id": 4, "value": 40, "timestamp": 4.0}',
        None,
    ]
    send_raw(bootstrap, topic, payloads)

    summary = stream(spark, bootstrap, topic, tmp_path)

    quarantine = read_quarantine(spark, tmp_path).orderBy("offset")
    rows = [(r["offset"], r["payload"], r["reason"], r["topic"], r["partition"]) for r in quarantine.collect()]
    assert rows == [
        (1, "{not json", "invalid JSON", topic, 0),
        (2, '{"id": 2}', "missing required field 'value'", topic, 0),
        (3, '{"id": 3, "value": "75"}', "field 'value' is not a valid int", topic, 0),
        (5, None, "payload is null", topic, 0),
    ]
    assert "kafka_timestamp" in quarantine.columns
    assert_ids_once(read_csv(spark, tmp_path), [1, 4])
    assert summary.written + summary.quarantined == len(payloads)


def test_rejected_rows_in_a_batch_after_a_clean_one_are_quarantined(spark, bootstrap, topic, tmp_path):
    good = [json.dumps({"id": i, "value": i, "timestamp": 1.0}).encode() for i in range(1, 5)]
    send_raw(bootstrap, topic, [*good, b"{not json", b'{"id": 5, "value": 5, "timestamp": 1.0}'])

    summary = stream(spark, bootstrap, topic, tmp_path, **{"source.max_offsets_per_trigger": 4})

    assert (summary.batches, summary.written, summary.quarantined) == (2, 5, 1)
    quarantine = read_quarantine(spark, tmp_path).collect()
    assert [(row["offset"], row["reason"]) for row in quarantine] == [(4, "invalid JSON")]
    assert_ids_once(read_csv(spark, tmp_path), range(1, 6))


def test_quarantine_is_json_lines_never_csv(spark, bootstrap, topic, tmp_path):
    send_raw(bootstrap, topic, [b"=HYPERLINK(1)"])

    stream(spark, bootstrap, topic, tmp_path)

    files = list((tmp_path / "quarantine").glob("*.json"))
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert [(line["payload"], line["reason"]) for line in lines] == [("=HYPERLINK(1)", "invalid JSON")]


def test_producer_sends_records_in_the_documented_format(bootstrap, topic):
    result = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "5", "--start-id", "7", "--seed", "3")

    assert result.returncode == 0, result.stderr
    assert f"sent 5 records to {topic}" in result.stdout
    messages = [(m.key, json.loads(m.value)) for m in topic_records(bootstrap, topic)]
    assert [key for key, _ in messages] == [b"7", b"8", b"9", b"10", b"11"]
    assert [sorted(record) for _, record in messages] == [["id", "timestamp", "value"]] * 5
    assert [record["id"] for _, record in messages] == [7, 8, 9, 10, 11]
    assert all(0 <= record["value"] <= 100 and isinstance(record["timestamp"], float) for _, record in messages)


def test_producer_fails_fast_when_nothing_listens():
    from infra.kafka.broker import free_port

    result = job("produce", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--timeout", "3", timeout=60)

    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot reach Kafka at 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "records to" not in result.stdout


def test_stream_job_fails_fast_when_nothing_listens(tmp_path):
    from infra.kafka.broker import free_port

    result = job(
        "stream", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--output", str(tmp_path / "o"),
        "--checkpoint", str(tmp_path / "c"), "--quarantine", str(tmp_path / "q"),
        "--config", str(_config_with_timeout(tmp_path, 3)), timeout=120,
    )

    assert result.returncode == 1
    assert "error: KafkaUnavailableError: cannot reach Kafka at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def _config_with_timeout(tmp_path, seconds):
    path = tmp_path / "pipeline.yml"
    path.write_text(f"source:\n  connect_timeout: {seconds}\n")
    return path


@pytest.mark.slow
def test_spark_submit_runs_the_stream_job_from_the_zip(spark, bootstrap, topic, tmp_path):
    produced = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "20")
    assert produced.returncode == 0, produced.stderr

    result = spark_submit(
        ROOT / "jobs" / "stream.py",
        "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"),
        "--trigger", "available-now",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 0: 20 rows in " in result.stdout
    assert "20 written, 0 quarantined" in result.stdout
    assert "done: 20 rows written, 0 quarantined" in result.stdout
    assert_ids_once(read_csv(spark, tmp_path), range(1, 21))
    header = next((tmp_path / "output").glob("*.csv")).read_text().splitlines()[0]
    assert header == "id,value,timestamp,processed_value"


def test_parquet_output_keeps_the_column_types(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 10)

    stream(spark, bootstrap, topic, tmp_path, **{"output.format": "parquet"})

    output = spark.read.parquet(str(tmp_path / "output"))
    assert output.schema.simpleString() == "struct<id:bigint,value:int,timestamp:double,processed_value:bigint>"
    assert_ids_once(output, range(1, 11))


def test_configured_transforms_shape_the_output(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)

    stream(
        spark, bootstrap, topic, tmp_path,
        **{
            "output.format": "json",
            "output.columns": "id,value,processed_value,event_time",
            "transforms": [{"name": "add_processed_value", "options": {"factor": 10}}, "with_event_time"],
        },
    )

    output = spark.read.json(str(tmp_path / "output"))
    assert output.columns == ["event_time", "id", "processed_value", "value"]  # JSON reads columns sorted
    assert output.where("event_time IS NULL").count() == 0
    rows = sorted((row["id"], row["processed_value"], row["value"]) for row in output.collect())
    assert [id_ for id_, _, _ in rows] == [1, 2, 3, 4, 5]
    assert [processed for _, processed, _ in rows] == [value * 10 for _, _, value in rows]


def test_stream_job_names_a_missing_topic(bootstrap, tmp_path):
    result = job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", "no-such-topic", "--output", str(tmp_path / "o"),
        "--checkpoint", str(tmp_path / "c"), "--quarantine", str(tmp_path / "q"), timeout=300,
    )

    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1
    assert errors == [f"error: TopicNotFoundError: topic 'no-such-topic' does not exist on {bootstrap}; jobs/produce.py creates it, or check --topic"]
    assert not (tmp_path / "o").exists()


class SlowToAnswer:
    """A loopback proxy to ``target`` that holds each connection's first answer back ``delay``
    seconds: a broker reachable but slow to answer (a long round trip, a loaded host)."""

    def __init__(self, target: str, delay: float):
        host, port = target.rsplit(":", 1)
        self.target, self.delay = (host, int(port)), delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            threading.Thread(target=self._pipe, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(source, sink, first_delay):
        try:
            while data := source.recv(65536):
                if first_delay:
                    time.sleep(first_delay)
                    first_delay = 0.0
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self):
        self.server.close()


def test_a_broker_slower_to_answer_than_the_first_bootstrap_attempt_is_still_reached(bootstrap, topic):
    from pipeline_lib.kafka_client import FIRST_BOOTSTRAP_ATTEMPT_SECONDS, KafkaSettings, admin_client

    proxy = SlowToAnswer(bootstrap, delay=FIRST_BOOTSTRAP_ATTEMPT_SECONDS * 1.5)
    try:
        admin = admin_client(KafkaSettings(bootstrap_servers=proxy.address, topic=topic), timeout=20)
        admin.close()
    finally:
        proxy.close()
