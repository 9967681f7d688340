"""A three-node KRaft cluster (infra/kafka/broker.py, LocalKafkaCluster): topics the producer
creates there are replicated three times and accept writes with one node gone."""

import json
import subprocess
import sys
import time
from typing import List

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
from tests.helpers import ROOT, job, run

pytestmark = pytest.mark.slow


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, bootstrap_timeout_ms=10000)


def partition_zero(bootstrap: str, topic: str) -> dict:
    client = admin(bootstrap)
    try:
        return client.describe_topics([topic])[0]["partitions"][0]
    finally:
        client.close()


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=31000)
    try:
        partition = TopicPartition(topic, 0)
        return consumer.end_offsets([partition])[partition]
    finally:
        consumer.close()


def read_ids(bootstrap: str, topic: str, timeout: float = 60) -> List[int]:
    """Every record id of partition 0, read to its end (no consumer group: nothing else to create)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=31000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        ids: List[int] = []
        deadline = time.monotonic() + timeout
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                ids += [json.loads(record.value)["id"] for record in records]
        return ids
    finally:
        consumer.close()


def test_cluster_registers_three_brokers_and_status_prints_a_line_per_node(kafka_cluster):
    broker_py = str(ROOT / "infra" / "kafka" / "broker.py")
    status = run([sys.executable, broker_py, "status", "--home", str(kafka_cluster.home)], timeout=60)

    assert kafka_cluster.registered_brokers() == {1: False, 2: False, 3: False}
    assert status.returncode == 0, status.stderr
    expected = [f"node {node.node_id} pid {node.pid()} port {node.port}" for node in kafka_cluster.nodes]
    assert status.stdout.splitlines() == expected
    assert len({node.pid() for node in kafka_cluster.nodes}) == 3


def test_producer_creates_topic_with_three_replicas_and_two_in_sync_required(kafka_cluster, topic):
    bootstrap = kafka_cluster.bootstrap_servers
    result = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "5", timeout=120)

    assert result.returncode == 0, result.stderr
    assert f"created topic {topic}: 1 partition, replication factor 3" in result.stdout.splitlines()
    partition = partition_zero(kafka_cluster.bootstrap_servers, topic)
    assert sorted(partition["replica_nodes"]) == [1, 2, 3]
    client = admin(kafka_cluster.bootstrap_servers)
    try:
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        client.close()
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"


def test_replication_factor_above_the_brokers_is_refused_in_one_line(kafka_cluster, topic):
    result = job(
        "produce", "--bootstrap-servers", kafka_cluster.bootstrap_servers, "--topic", topic, "--count", "5",
        "--replication-factor", "5", timeout=120,
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: --replication-factor: 5 is more than the 3 broker(s)"), lines[0]
    assert "created topic" not in result.stdout
    client = admin(kafka_cluster.bootstrap_servers)
    try:
        assert topic not in client.list_topics()
    finally:
        client.close()


def test_producer_sends_every_record_acknowledged_with_the_leader_killed(kafka_cluster, topic):
    bootstrap = kafka_cluster.bootstrap_servers
    first = job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "50", timeout=120)
    assert first.returncode == 0, first.stderr
    leader = partition_zero(bootstrap, topic)["leader_id"]
    producer = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "produce.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
         "--count", "300", "--rate", "50", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        # Killed mid-send: once part of the second run is on the log, while the rest is to come.
        deadline = time.monotonic() + 60
        while end_offset(bootstrap, topic) < 80 and time.monotonic() < deadline and producer.poll() is None:
            time.sleep(0.2)
        assert producer.poll() is None, "the producer finished before the kill"
        assert kafka_cluster.kill_node(leader) is not None
        stdout, stderr = producer.communicate(timeout=180)

        assert producer.returncode == 0, stderr
        assert "sent 300 records" in stdout
        partition = partition_zero(bootstrap, topic)
        # Every record acknowledged by the two replicas left, as min.insync.replicas 2 demands.
        assert partition["leader_id"] != leader and sorted(partition["isr_nodes"]) == sorted({1, 2, 3} - {leader})
        ids = read_ids(bootstrap, topic)
        assert sorted(ids) == list(range(1, 351))
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate(timeout=30)
        kafka_cluster.start_node(leader)


def test_a_created_topic_takes_the_configs_given(bootstrap, topic):
    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 1, 30, configs={"retention.ms": "3600000"})

    client = admin(bootstrap)
    try:
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        client.close()
    assert configs["topic"][topic]["retention.ms"]["value"] == "3600000"


def test_single_node_still_defaults_to_replication_factor_one(bootstrap, topic):
    created = ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 1, 30)

    assert created == 1
    assert partition_zero(bootstrap, topic)["replica_nodes"] == [1]
