"""The jobs on the oldest and the newest Apache Kafka brokers supported besides the pinned one
(infra/kafka/pom.xml's, which every other test runs on)."""

import pytest

from infra.kafka.broker import LocalKafka, free_port
from tests.helpers import job
from tests.integration.test_pipeline import assert_ids_once, read_csv, stream

# The README's "Supported brokers" names the same releases.
OLDEST, NEWEST = "3.9.2", "4.4.0"


@pytest.fixture(params=[OLDEST, NEWEST])
def broker(request, tmp_path_factory):
    """A broker of that release of its own, one at a time: started for the test, stopped after it."""
    version = request.param
    started = LocalKafka(tmp_path_factory.mktemp(f"kafka-{version}"), port=free_port(), kafka_version=version)
    started.start(timeout=180)
    yield started
    started.stop()


@pytest.mark.slow
def test_plain_and_transactional_records_land_once_each_through_the_stream_job(spark, broker, topic, tmp_path):
    bootstrap = broker.bootstrap_servers
    produce = ("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "10")

    plain = job(*produce, timeout=120)
    transactional = job(*produce, "--run-id", "run-1", "--run-start", "2024-05-08T15:20:00Z", timeout=120)
    summary = stream(spark, bootstrap, topic, tmp_path)

    assert f"Kafka version: {broker.kafka_version}" in broker.log_file.read_text()
    assert (plain.returncode, transactional.returncode) == (0, 0), plain.stderr[-2000:] + transactional.stderr[-2000:]
    assert "run run-1: ids 11-20 committed in one transaction" in transactional.stdout
    assert summary.written == 20
    assert_ids_once(read_csv(spark, tmp_path), range(1, 21))
