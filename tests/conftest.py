"""One SparkSession and one Kafka broker for the whole test run, both real and local."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import BrokerTls, LocalKafka, free_port  # noqa: E402
from pipeline_lib.session import get_spark  # noqa: E402

SASL_USER = "pipeline"
SASL_PASSWORD = "s3cret-pipeline-pw"
# Characters that end or change a JAAS entry or a properties line unless escaped.
SPECIAL_USER = 'pi"pe line'
SPECIAL_PASSWORD = 'p"a\\ss w0rd;'
SCRAM_USER = "pipeline-scram"
SCRAM_PASSWORD = "s3cret-scram-pw"


@pytest.fixture(scope="session")
def spark():
    session = get_spark(
        "tests",
        master="local[2]",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """PEM files made for this run: a CA, the broker's certificate, a client certificate, and an
    unrelated CA with a client certificate of its own (tests/certificates.py)."""
    from tests.certificates import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory, tls_files) -> Iterator[LocalKafka]:
    """A broker of the test run's own on free loopback ports, stopped at the end. Listeners:
    PLAINTEXT (``bootstrap_servers``); SASL_PLAINTEXT (``sasl_bootstrap_servers``) with PLAIN for
    SASL_USER and SPECIAL_USER and SCRAM-SHA-256/512 for SCRAM_USER and SPECIAL_USER; SSL
    (``ssl_bootstrap_servers``) and SSL requiring a client certificate signed by the test CA
    (``mtls_bootstrap_servers``)."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka"),
        port=free_port(),
        sasl_port=free_port(),
        sasl_users={SASL_USER: SASL_PASSWORD, SPECIAL_USER: SPECIAL_PASSWORD},
        scram_users={SCRAM_USER: SCRAM_PASSWORD, SPECIAL_USER: SPECIAL_PASSWORD},
        tls=BrokerTls(certfile=tls_files.server.certfile, keyfile=tls_files.server.keyfile, cafile=tls_files.ca),
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka) -> str:
    return kafka.bootstrap_servers


_topic_numbers = itertools.count(1)


@pytest.fixture
def topic(request) -> str:
    """A topic name no other test uses (created on first send)."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:80]
    return f"t{next(_topic_numbers)}-{name}"


def send_raw(bootstrap: str, topic: str, payloads: Iterable[Optional[bytes]], partitions: int = 1) -> int:
    """Write payloads to ``topic`` as they are (no JSON encoding); returns how many."""
    from kafka import KafkaProducer

    from pipeline_lib.kafka_client import KafkaSettings
    from pipeline_lib.kafka_client import ensure_topic

    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), partitions, 30)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    # kafka-python refuses a message with neither key nor value: a null value gets a key.
    futures: List = [
        producer.send(topic, key=None if payload is not None else b"null-value", value=payload)
        for payload in payloads
    ]
    producer.flush(30)
    producer.close()
    for future in futures:
        future.get(timeout=1)
    return len(futures)
