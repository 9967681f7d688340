"""One SparkSession and one Kafka broker for the whole test run, both real and local."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import BrokerTls, LocalKafka, LocalKafkaCluster, free_port  # noqa: E402
from pipeline_lib.session import get_spark  # noqa: E402
from tests.helpers import TEARDOWN_STOP_SECONDS  # noqa: E402

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


@pytest.fixture
def viewfs(spark, tmp_path):
    """Hadoop's viewfs over two local folders, ``tmp_path/a`` and ``tmp_path/b``: a file system
    of Hadoop's own (not the local one), whose two mount points refuse a rename across them.
    Returns a function giving the URI of a path under a mount point (``viewfs("a/out")``)."""
    table = f"t{uuid.uuid4().hex[:12]}"
    configuration = spark.sparkContext._jsc.hadoopConfiguration()
    for mount in ("a", "b"):
        (tmp_path / mount).mkdir()
        configuration.set(f"fs.viewfs.mounttable.{table}.link./{mount}", (tmp_path / mount).as_uri())
    return lambda path: f"viewfs://{table}/{path}"


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
    broker.stop(timeout=TEARDOWN_STOP_SECONDS)


@pytest.fixture(scope="session")
def bootstrap(kafka) -> str:
    return kafka.bootstrap_servers


class ClientNamespace:
    """A network namespace for one client, linked to this machine by a veth pair per broker,
    each pair on a private /30 of 10.200.N.0/24 (N: a block no address or route here uses).
    Broker ``i`` listens on the host end of pair ``i`` too (``host_address(i)``), so a client
    inside reaches each broker over a link of its own, and :meth:`cut` drops one of them (a
    blackhole route each way) while the others carry on. No address outside this machine is
    involved; ``unavailable`` says why the namespace could not be made, if it could not."""

    def __init__(self, nodes: int):
        self.nodes = nodes
        self.name = f"kafka-client-{os.getpid()}"
        self.block: Optional[int] = None
        self.unavailable: Optional[str] = None

    @staticmethod
    def _ip(*args: str) -> str:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise OSError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
        return done.stdout

    def host_address(self, node_id: int) -> str:
        return f"10.200.{self.block}.{4 * (node_id - 1) + 1}"

    def client_address(self, node_id: int) -> str:
        return f"10.200.{self.block}.{4 * (node_id - 1) + 2}"

    def create(self) -> None:
        used = self._ip("-4", "-o", "addr") + self._ip("-4", "route", "show", "table", "all")
        self.block = next(n for n in range(200, 255) if f"10.200.{n}." not in used)
        self._ip("netns", "add", self.name)
        self._ip("-n", self.name, "link", "set", "lo", "up")
        for node_id in range(1, self.nodes + 1):
            host, inside = f"kc{os.getpid()}h{node_id}", f"kc{os.getpid()}n{node_id}"
            self._ip("link", "add", host, "type", "veth", "peer", "name", inside, "netns", self.name)
            self._ip("addr", "add", f"{self.host_address(node_id)}/30", "dev", host)
            self._ip("link", "set", host, "up")
            self._ip("-n", self.name, "addr", "add", f"{self.client_address(node_id)}/30", "dev", inside)
            self._ip("-n", self.name, "link", "set", inside, "up")

    def delete(self) -> None:
        """The namespace, its veth pairs with it, and any blackhole route left on this side."""
        if self.block is None:
            return
        for node_id in range(1, self.nodes + 1):
            subprocess.run(["ip", "route", "del", "blackhole", f"{self.client_address(node_id)}/32"],
                           capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def command(self, argv: List[str]) -> List[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self, node_id: int) -> None:
        """Packets between the client and broker ``node_id`` vanish, both ways."""
        self._ip("-n", self.name, "route", "add", "blackhole", f"{self.host_address(node_id)}/32")
        self._ip("route", "add", "blackhole", f"{self.client_address(node_id)}/32")

    def heal(self, node_id: int) -> None:
        self._ip("-n", self.name, "route", "del", "blackhole", f"{self.host_address(node_id)}/32")
        self._ip("route", "del", "blackhole", f"{self.client_address(node_id)}/32")


@pytest.fixture(scope="session")
def client_namespace() -> Iterator[ClientNamespace]:
    namespace = ClientNamespace(nodes=3)
    try:
        namespace.create()
    except (OSError, subprocess.SubprocessError, StopIteration) as error:
        namespace.delete()
        namespace.unavailable = f"no network namespace with veth pairs could be made here: {error}"
    yield namespace
    namespace.delete()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory, client_namespace) -> Iterator[LocalKafkaCluster]:
    """Three nodes on free loopback ports (replication factor 3, min.insync.replicas 2, unclean
    leader election off), started the first time a test asks for them and stopped at the end of
    the run; when ``client_namespace`` could be made, each node also serves its client there.
    A test that stops, kills or pauses nodes brings them all back before it ends."""
    nodes = LocalKafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), nodes=3)
    if client_namespace.unavailable is None:
        nodes.serve_also_on({node.node_id: client_namespace.host_address(node.node_id) for node in nodes.nodes})
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop(timeout=TEARDOWN_STOP_SECONDS)


_topic_numbers = itertools.count(1)


@pytest.fixture
def topic(request) -> str:
    """A topic name no other test uses (created on first send)."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:80]
    return f"t{next(_topic_numbers)}-{name}"


def send_raw(
    bootstrap: str,
    topic: str,
    payloads: Iterable[Optional[bytes]],
    partitions: int = 1,
    headers: Optional[List[Tuple[str, bytes]]] = None,
) -> int:
    """Write payloads to ``topic`` as they are (no JSON encoding), each with Kafka ``headers``;
    returns how many."""
    from kafka import KafkaProducer

    from pipeline_lib.kafka_client import KafkaSettings, ensure_topic

    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), partitions, 30)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    # kafka-python refuses a message with neither key nor value: a null value gets a key.
    futures: List = [
        producer.send(topic, key=None if payload is not None else b"null-value", value=payload, headers=headers)
        for payload in payloads
    ]
    producer.flush(30)
    producer.close()
    for future in futures:
        future.get(timeout=1)
    return len(futures)
