"""Records that other clients compressed (librdkafka, Kafka's own console producer): the producer
continues after their highest id, kafka-python's consumer reads them, and the stream job writes
them once."""

import json
import struct
import subprocess
import time

import pytest

from tests.helpers import ROOT, job, topic_records

CODECS = ["gzip", "snappy", "lz4", "zstd"]
COUNT = 20
ADDED = 10
# Kafka's RecordBatch v2 header: batchLength at byte 8, attributes at byte 21 with the codec in
# their low 3 bits (Kafka's protocol documentation, "Record Batch").
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def records(count):
    return [{"id": n, "value": n * 7 % 101, "timestamp": round(time.time(), 3)} for n in range(1, count + 1)]


def create_topic(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)


def send_with_librdkafka(bootstrap, topic, codec, count=COUNT):
    """``count`` records as the project's producer writes them (JSON value, the id as key), sent by
    confluent-kafka with ``compression.type`` = ``codec``; returns them."""
    from confluent_kafka import Producer

    create_topic(bootstrap, topic)
    sent = records(count)
    failures = []
    # One linger long enough for a single batch: librdkafka sends a batch uncompressed when
    # compressing would not make it smaller, and tiny batches would not.
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all", "linger.ms": 200,
                         "message.timeout.ms": 30000})
    for record in sent:
        producer.produce(topic, key=str(record["id"]).encode(), value=json.dumps(record).encode(),
                         on_delivery=lambda error, message: error and failures.append(error))
    assert producer.flush(30) == 0 and failures == [], failures
    return sent


def batch_codecs(kafka, topic):
    """The codec of every record batch in the broker's log of partition 0, as stored."""
    codecs = []
    for segment in sorted((kafka.home / "data" / f"{topic}-0").glob("*.log")):
        data, position = segment.read_bytes(), 0
        while position + 23 <= len(data):
            (length,) = struct.unpack_from(">i", data, position + 8)
            (attributes,) = struct.unpack_from(">h", data, position + 21)
            codecs.append(CODEC_NAMES[attributes & 0x07])
            position += 12 + length
    return codecs


def produce_job(bootstrap, topic):
    return job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", str(ADDED), timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_produce_continues_after_the_highest_id_of_records_another_client_compressed(kafka, bootstrap, topic, codec):
    send_with_librdkafka(bootstrap, topic, codec)
    assert set(batch_codecs(kafka, topic)) == {codec}

    result = produce_job(bootstrap, topic)

    assert result.returncode == 0, result.stderr[-3000:]
    ids = [json.loads(message.value)["id"] for message in topic_records(bootstrap, topic)]
    assert ids[:COUNT] == list(range(1, COUNT + 1))
    assert sorted(ids[COUNT:]) == list(range(COUNT + 1, COUNT + ADDED + 1))


@pytest.mark.parametrize("codec", CODECS)
def test_stream_job_writes_each_id_once_after_records_another_client_compressed(spark, bootstrap, topic, tmp_path, codec):
    # Imported here so that the producer's tests above do not depend on the stream job's modules.
    from tests.integration.test_pipeline import assert_ids_once, read_csv, stream

    send_with_librdkafka(bootstrap, topic, codec)
    assert produce_job(bootstrap, topic).returncode == 0

    summary = stream(spark, bootstrap, topic, tmp_path)

    assert (summary.written, summary.quarantined) == (COUNT + ADDED, 0)
    assert_ids_once(read_csv(spark, tmp_path), range(1, COUNT + ADDED + 1))


@pytest.mark.slow
def test_produce_continues_after_the_highest_id_of_records_kafkas_console_producer_compressed(kafka, bootstrap, topic):
    create_topic(bootstrap, topic)
    lines = "".join(f"{record['id']}\t{json.dumps(record)}\n" for record in records(COUNT))
    sent = subprocess.run(
        [str(ROOT / "infra" / "kafka" / "bin" / "kafka-console-producer"), "--bootstrap-server", bootstrap,
         "--topic", topic, "--compression-codec", "lz4", "--property", "parse.key=true"],
        input=lines, capture_output=True, text=True, timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    assert set(batch_codecs(kafka, topic)) == {"lz4"}

    result = produce_job(bootstrap, topic)

    assert result.returncode == 0, result.stderr[-3000:]
    ids = [json.loads(message.value)["id"] for message in topic_records(bootstrap, topic)]
    assert ids[:COUNT] == list(range(1, COUNT + 1))
    assert sorted(ids[COUNT:]) == list(range(COUNT + 1, COUNT + ADDED + 1))


@pytest.mark.slow
def test_kafka_python_consumer_reads_back_a_zstd_topic_as_sent(kafka, bootstrap, topic):
    sent = send_with_librdkafka(bootstrap, topic, "zstd")
    assert set(batch_codecs(kafka, topic)) == {"zstd"}

    messages = topic_records(bootstrap, topic)

    assert [(message.key, json.loads(message.value)) for message in messages] == [
        (str(record["id"]).encode(), record) for record in sent
    ]
