"""A local Apache Kafka (KRaft: broker and controller in one JVM per node) from Kafka's own jars.

No Docker and no tarball: Maven fetches ``org.apache.kafka:kafka_2.13`` and its dependencies
into ``infra/kafka/libs`` (pom.xml beside this file). Used by ``make kafka-up``/``kafka-down``
and by the tests' session fixtures. One node (``LocalKafka``) by default; ``--nodes 3`` starts
a cluster (``LocalKafkaCluster``) on ports P, P+1, P+2 whose every node is also a controller::

    python infra/kafka/broker.py start --home .kafka --port 9092 [--nodes 3]
    python infra/kafka/broker.py status --home .kafka
    python infra/kafka/broker.py stop --home .kafka

Another release (3.9.0 or later) runs from jars of its own, in ``infra/kafka/libs/kafka-<version>``::

    python infra/kafka/broker.py fetch --kafka-version 3.9.2
    python infra/kafka/broker.py start --home .kafka-3.9 --port 9093 --kafka-version 3.9.2
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

HERE = Path(__file__).resolve().parent
LIBS = HERE / "libs"
# The oldest release LocalKafka can start: the first with KRaft's standalone controller quorum.
OLDEST_KAFKA = (3, 9, 0)
SCRAM_ITERATIONS = 4096

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def libs_folder(version: Optional[str] = None) -> Path:
    """Where the jars of Kafka ``version`` go: ``infra/kafka/libs`` for the version pom.xml pins
    (None), a folder of its own under it for another, so that ``make clean`` and the ignore
    rules of the pinned jars cover it too."""
    if version is None:
        return LIBS
    if re.fullmatch(r"\d+\.\d+\.\d+", version) is None:
        raise ValueError(f"--kafka-version: {version!r} is not a Kafka release such as 3.9.2")
    if tuple(int(part) for part in version.split(".")) < OLDEST_KAFKA:
        # Older releases need a static controller quorum (controller.quorum.voters) and another
        # storage format; the brokers started here use the dynamic one of KIP-853.
        raise ValueError(f"--kafka-version: {version} is older than {'.'.join(map(str, OLDEST_KAFKA))}")
    return LIBS / f"kafka-{version}"


def fetch_jars(quiet: bool = True, version: Optional[str] = None) -> Path:
    """Resolve the broker's and the tools' jars with Maven once; later calls find them in place.
    ``version`` None: the version pom.xml pins; another release of Apache Kafka otherwise."""
    libs = libs_folder(version)
    if not (any(libs.glob("kafka_2.13-*.jar")) and any(libs.glob("kafka-tools-[0-9]*.jar"))):
        command = [
            "mvn",
            "-B",
            "-f",
            str(HERE / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        if version is not None:
            command.append(f"-Dkafka.version={version}")
        subprocess.run(command + (["-q"] if quiet else []), check=True)
    return libs


_PORTS_GIVEN: set = set()


def free_port(count: int = 1) -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the kernel
    picked itself could be taken by an outgoing connection before the broker binds it. Never the
    same port twice in one process. With ``count``, the first of that many consecutive such
    ports (a cluster's client ports)."""
    low, high = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
            high = min(high, int(ranges.read().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(1000):
        port = random.randrange(low, high - count + 1)
        block = range(port, port + count)
        if _PORTS_GIVEN.intersection(block) or not all(_bindable(candidate) for candidate in block):
            continue
        _PORTS_GIVEN.update(block)
        return port
    raise RuntimeError(f"no {count} free loopback port(s) in a row between {low} and {high}")


def _bindable(port: int, reuse: bool = False) -> bool:
    """Whether ``port`` can be bound; with ``reuse`` as Kafka binds it (SO_REUSEADDR), so that
    connections of a node just stopped, in TIME_WAIT, do not count as a listener."""
    with socket.socket() as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def new_cluster_id() -> str:
    """A cluster (or directory) id as Kafka makes one: a random UUID, URL-safe base64, unpadded,
    never starting with a dash (Kafka's Uuid.randomUuid rule: its tools would read the id as an
    option, and one in 64 ids would do it)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def jaas_quote(value: str) -> str:
    """``value`` as a quoted JAAS option value (Kafka's JaasConfig reads ``\\`` and ``\\"``).

    >>> print(jaas_quote('p"a\\\\ss;'))
    "p\\"a\\\\ss;"
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def properties_value(value: str) -> str:
    """``value`` as written in a Java properties file, read back unchanged (backslashes,
    leading blanks, line breaks, characters beyond Latin-1).

    >>> properties_value(' a\\\\b')
    '\\\\ a\\\\\\\\b'
    """
    out = []
    for index, char in enumerate(value):
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char in " \t\f" and index == 0:
            out.append("\\" + char)
        elif ord(char) > 126 or ord(char) < 32:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@dataclass(frozen=True)
class BrokerTls:
    """PEM files for the broker's TLS listeners: its certificate chain and PKCS#8 key, and the
    CA whose client certificates the mutual-TLS listener accepts."""

    certfile: Path
    keyfile: Path
    cafile: Path


class LocalKafka:
    """One broker+controller process with its data, config, log and pid file under ``home``.

    Listeners, all on 127.0.0.1: PLAINTEXT on ``port``; with ``sasl_port``, SASL_PLAINTEXT with
    PLAIN for ``sasl_users`` and SCRAM-SHA-256 and SCRAM-SHA-512 for ``scram_users`` (name ->
    password; the SCRAM credentials are written into the storage when it is formatted); with
    ``tls``, SSL on ``ssl_port`` (server authentication only) and SSL with client certificates
    signed by ``tls.cafile`` required on ``mtls_port``. ``kafka_version`` runs another release of
    Apache Kafka than the one pom.xml pins (its jars fetched on first use, :func:`fetch_jars`).
    With ``extra_address`` set, PLAINTEXT clients are also served on that address (listener
    EXTRA, on ``extra_port``): a client in another network namespace reaches the broker there.
    """

    extra_address: Optional[str] = None
    extra_port: Optional[int] = None

    def __init__(
        self,
        home: Path,
        port: int = 9092,
        controller_port: Optional[int] = None,
        sasl_port: Optional[int] = None,
        sasl_users: Optional[Dict[str, str]] = None,
        heap: str = "512m",
        scram_users: Optional[Dict[str, str]] = None,
        tls: Optional[BrokerTls] = None,
        ssl_port: Optional[int] = None,
        mtls_port: Optional[int] = None,
        kafka_version: Optional[str] = None,
    ):
        libs_folder(kafka_version)  # a release that cannot run here is refused before any work
        self.kafka_version = kafka_version
        self.node_id = 1
        self.home = Path(home).resolve()
        self.port = port
        # The controller's address is written into the formatted storage; keep it on restart.
        self.controller_port = controller_port or self._configured_controller_port() or free_port()
        self.sasl_port = sasl_port
        self.sasl_users = sasl_users or {}
        self.scram_users = scram_users or {}
        self.tls = tls
        self.ssl_port = ssl_port or (free_port() if tls else None)
        self.mtls_port = mtls_port or (free_port() if tls else None)
        self.heap = heap
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "server.log"

    def _configured_controller_port(self) -> Optional[int]:
        config = self.home / "server.properties"
        if not config.exists():
            return None
        for line in config.read_text().splitlines():
            if line.startswith("controller.quorum.bootstrap.servers="):
                return int(line.rsplit(":", 1)[1])
        return None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def mtls_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def pid(self) -> Optional[int]:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def _properties(self) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        lines = [
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.bootstrap.servers={self._quorum_servers()}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map="
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,MTLS:SSL,EXTRA:PLAINTEXT",
            f"log.dirs={properties_value(str(self.home / 'data'))}",
            "num.partitions=1",
            *self._replication_properties(),
            "group.initial.rebalance.delay.ms=0",
            # Room for oversized test payloads, which the pipeline must quarantine, not lose.
            "message.max.bytes=4194304",
            # A topic's retention.ms acts within a second rather than Kafka's five minutes, so a
            # retention that deletes records a stopped job still wanted can be shown and tested.
            "log.retention.check.interval.ms=1000",
        ]
        if self.sasl_users or self.scram_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            # Every name and password is quoted and escaped: any character stays part of it.
            users = " ".join(
                f"{jaas_quote('user_' + name)}={jaas_quote(password)}" for name, password in self.sasl_users.items()
            )
            scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            lines += [
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                + properties_value(f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"),
                f"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram}",
                f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram}",
            ]
        if self.tls:
            for name, port in (("SSL", self.ssl_port), ("MTLS", self.mtls_port)):
                listeners.append(f"{name}://127.0.0.1:{port}")
                advertised.append(f"{name}://127.0.0.1:{port}")
                prefix = f"listener.name.{name.lower()}.ssl."
                lines += [
                    # PEM given inline: the chain and the unencrypted PKCS#8 key as they are in the files.
                    f"{prefix}keystore.type=PEM",
                    f"{prefix}keystore.certificate.chain={properties_value(self.tls.certfile.read_text())}",
                    f"{prefix}keystore.key={properties_value(self.tls.keyfile.read_text())}",
                    f"{prefix}truststore.type=PEM",
                    f"{prefix}truststore.certificates={properties_value(self.tls.cafile.read_text())}",
                    f"{prefix}client.auth={'required' if name == 'MTLS' else 'none'}",
                ]
        if self.extra_address:
            listeners.append(f"EXTRA://{self.extra_address}:{self.extra_port}")
            advertised.append(f"EXTRA://{self.extra_address}:{self.extra_port}")
        lines += [f"listeners={','.join(listeners)}", f"advertised.listeners={','.join(advertised)}"]
        return "\n".join(lines) + "\n"

    def _quorum_servers(self) -> str:
        return f"127.0.0.1:{self.controller_port}"

    def _replication_properties(self) -> List[str]:
        # One broker: the internal topics cannot have more replicas than that.
        return [
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
        ]

    def _format_arguments(self) -> List[str]:
        """The storage format's quorum arguments: this node is the whole quorum."""
        return ["--standalone", "-t", new_cluster_id()]

    def _scram_arguments(self) -> list:
        """``--add-scram`` arguments of the storage format, one per user and mechanism.

        Kafka's parser of these arguments splits on commas and knows no escape, so the password
        is given already salted (base64): any character in it survives. A name cannot hold a comma.
        """
        arguments = []
        for name, password in self.scram_users.items():
            if "," in name or name.startswith('"') or not name:
                raise ValueError(
                    f"SCRAM user name {name!r} cannot be given to kafka-storage (no comma, no leading quote)"
                )
            for mechanism, digest in (("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-512", "sha512")):
                salt = os.urandom(16)
                salted = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, SCRAM_ITERATIONS)
                arguments += [
                    "--add-scram",
                    f"{mechanism}=[name={name},iterations={SCRAM_ITERATIONS},"
                    f"salt={base64.b64encode(salt).decode()},saltedpassword={base64.b64encode(salted).decode()}]",
                ]
        return arguments

    def _java(self, main_class: str, *args: str) -> list:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{fetch_jars(version=self.kafka_version)}/*",
            main_class,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker unless it already runs; True when this call started it."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        self.launch()
        try:
            self.wait_ready(timeout)
        except TimeoutError:
            self.stop()
            raise
        return True

    def launch(self) -> int:
        """Write the config, format the storage the first time, start the JVM; its pid, at once."""
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(self._properties())
        (self.home / "log4j2.properties").write_text(
            LOG4J2.format(log=self.log_file, level=os.environ.get("KAFKA_LOG_LEVEL", "INFO"))
        )
        if not (self.home / "data" / "meta.properties").exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    *self._format_arguments(),
                    "-c",
                    str(config),
                    *self._scram_arguments(),
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=120,
            )
        with open(self.home / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def wait_ready(self, timeout: float) -> None:
        """Until the broker answers a metadata request (kafka-python's admin client)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise RuntimeError(f"Kafka exited during start-up; see {self.home / 'stdout.log'} and {self.log_file}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
                admin.list_topics()
                admin.close()
                return
            except KafkaError:
                time.sleep(0.5)
        raise TimeoutError(f"Kafka on {self.bootstrap_servers} did not answer within {timeout:g}s")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop exactly the process in the pid file; True when one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect our own child so it stops counting as alive (no-op for other processes)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class ClusterNode(LocalKafka):
    """One node of a :class:`LocalKafkaCluster`: a broker, and a controller among all the nodes'."""

    def __init__(self, cluster: "LocalKafkaCluster", node_id: int, port: int, controller_port: int, directory_id: str):
        super().__init__(
            cluster.home / f"node-{node_id}",
            port=port,
            controller_port=controller_port,
            heap=cluster.heap,
            kafka_version=cluster.kafka_version,
        )
        self.cluster = cluster
        self.node_id = node_id
        self.directory_id = directory_id

    def _quorum_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.controller_port}" for node in self.cluster.nodes)

    def _replication_properties(self) -> List[str]:
        replicas, min_isr = self.cluster.replication_factor, self.cluster.min_insync_replicas
        return [
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            # A replica that missed acknowledged writes must never become leader: it would drop them.
            "unclean.leader.election.enable=false",
            # A follower that stops fetching leaves the ISR after 5 s rather than Kafka's 30 s: a
            # hung follower holds acks=all writes back for seconds, not half a minute.
            f"replica.lag.time.max.ms={self.cluster.REPLICA_LAG_MS}",
            # A broker that stops heartbeating is fenced, and its partitions led by another, after
            # 5 s rather than Kafka's 9 s: on one machine a heartbeat is never late for long.
            f"broker.session.timeout.ms={self.cluster.SESSION_TIMEOUT_MS}",
            "broker.heartbeat.interval.ms=1000",
            f"offsets.topic.replication.factor={replicas}",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
        ]

    def _format_arguments(self) -> List[str]:
        # Every node is formatted with the same cluster id and the same initial voters; the
        # format gives this node's metadata directory the directory id its voter entry names.
        return ["--initial-controllers", self.cluster.initial_controllers(), "-t", self.cluster.cluster_id]

    def signal(self, number: int) -> Optional[int]:
        """Send ``number`` to the node's process; its pid, or None when it was not running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, number)
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        # A paused (SIGSTOP) JVM would act on SIGTERM only once resumed.
        self.signal(signal.SIGCONT)
        return super().stop(timeout)


class LocalKafkaCluster:
    """``nodes`` KRaft nodes on 127.0.0.1, each a broker and a controller, under ``home``.

    Node ``i`` (1-based) has its data, config, log and pid file in ``home/node-<i>`` and serves
    clients on ``port + i - 1``; the controllers listen on free ports of their own. The layout
    (cluster id, ports, directory ids) is kept in ``home/cluster.json``: the formatted storage
    names the controllers' addresses, so a cluster restarted from the same home keeps them, and
    its client ports too. Defaults: topics get ``min(3, nodes)`` replicas and need
    ``min.insync.replicas`` one fewer (2 of 3) to accept an ``acks=all`` write, for the internal
    topics as well; unclean leader election is off; a broker that stops heartbeating is fenced
    after 5 s (``broker.session.timeout.ms``; Kafka's default is 9 s).

    With ``port`` None a new cluster takes ``nodes`` consecutive free ports (:func:`free_port`).
    """

    LAYOUT = "cluster.json"
    REPLICA_LAG_MS = 5000
    SESSION_TIMEOUT_MS = 5000

    def __init__(
        self,
        home: Path,
        nodes: int = 3,
        port: Optional[int] = None,
        heap: str = "512m",
        kafka_version: Optional[str] = None,
    ):
        self.home = Path(home).resolve()
        self.heap = heap
        self.kafka_version = kafka_version
        layout = self._read_layout()
        if layout is not None:
            first = layout["nodes"][0]["port"]
            if len(layout["nodes"]) != nodes or (port is not None and port != first):
                raise ValueError(
                    f"{self.home} holds a cluster of {len(layout['nodes'])} node(s) on port {first} and up: "
                    f"give --nodes {len(layout['nodes'])} --port {first}, or another --home"
                )
        elif (self.home / "data").exists() or (self.home / "kafka.pid").exists():
            raise ValueError(f"{self.home} holds a single-node Kafka: give --nodes 1, or another --home")
        elif nodes < 2:
            raise ValueError("a cluster has 2 nodes or more; one node is LocalKafka")
        else:
            port = port if port is not None else free_port(nodes)
            _PORTS_GIVEN.update(range(port, port + nodes))  # so that no controller port is a client port
            layout = {
                "cluster_id": new_cluster_id(),
                "nodes": [
                    {
                        "id": index + 1,
                        "port": port + index,
                        "controller_port": free_port(),
                        "directory_id": new_cluster_id(),
                    }
                    for index in range(nodes)
                ],
            }
        self.cluster_id: str = layout["cluster_id"]
        self.nodes: List[ClusterNode] = [
            ClusterNode(self, entry["id"], entry["port"], entry["controller_port"], entry["directory_id"])
            for entry in layout["nodes"]
        ]

    @classmethod
    def holds_cluster(cls, home: Path) -> bool:
        return (Path(home) / cls.LAYOUT).exists()

    @classmethod
    def existing(cls, home: Path) -> "LocalKafkaCluster":
        """The cluster whose layout is in ``home``, as it was started."""
        layout = json.loads((Path(home) / cls.LAYOUT).read_text())
        return cls(home, nodes=len(layout["nodes"]))

    def _read_layout(self) -> Optional[dict]:
        path = self.home / self.LAYOUT
        return json.loads(path.read_text()) if path.exists() else None

    def _write_layout(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        layout = {
            "cluster_id": self.cluster_id,
            "nodes": [
                {
                    "id": node.node_id,
                    "port": node.port,
                    "controller_port": node.controller_port,
                    "directory_id": node.directory_id,
                }
                for node in self.nodes
            ],
        }
        (self.home / self.LAYOUT).write_text(json.dumps(layout, indent=2) + "\n")

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.nodes))

    @property
    def min_insync_replicas(self) -> int:
        # One replica may be down and writes go on; two copies of every acknowledged write remain.
        return max(1, self.replication_factor - 1)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def initial_controllers(self) -> str:
        return ",".join(f"{node.node_id}@127.0.0.1:{node.controller_port}:{node.directory_id}" for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id}; nodes are {', '.join(str(node.node_id) for node in self.nodes)}")

    def pids(self) -> Dict[int, Optional[int]]:
        return {node.node_id: node.pid() for node in self.nodes}

    def start(self, timeout: float = 180.0) -> bool:
        """Start every node not running, together (a quorum needs a majority of them up), and
        wait until all brokers are registered; True when this call started any. On failure the
        nodes this call started are stopped again."""
        stopped = [node for node in self.nodes if node.pid() is None]
        for node in stopped:
            for port in (node.port, node.controller_port):
                if not _bindable(port, reuse=True):
                    raise RuntimeError(
                        f"port {port} of node {node.node_id} is in use: give another --port, or stop what listens there"
                    )
        self._write_layout()
        try:
            for node in stopped:
                node.launch()
            self.wait_registered(timeout)
        except BaseException:
            self._stop_all(stopped)
            raise
        return bool(stopped)

    def stop(self, timeout: float = 30.0) -> List[int]:
        """Stop every node (SIGTERM to all at once, SIGKILL after ``timeout``); the ids of those
        that were running."""
        return self._stop_all(self.nodes, timeout)

    def _stop_all(self, nodes: Iterable[ClusterNode], timeout: float = 30.0) -> List[int]:
        # All at once: brokers stopped one by one can wait on a quorum that is already gone.
        pids = {node.node_id: (node, node.pid()) for node in nodes}
        running = {node_id: (node, pid) for node_id, (node, pid) in pids.items() if pid is not None}
        for node, _ in running.values():
            node.signal(signal.SIGCONT)
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node, pid in running.values():
            _wait_exit(node, pid, deadline)
        return sorted(running)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        """Stop one node cleanly (SIGTERM: controlled shutdown); True when it was running."""
        return self.node(node_id).stop(timeout)

    def kill_node(self, node_id: int) -> Optional[int]:
        """SIGKILL one node, as a crash does; its pid, or None when it was not running."""
        node = self.node(node_id)
        pid = node.signal(signal.SIGKILL)
        if pid is not None:
            _wait_exit(node, pid, time.monotonic() + 30)
        return pid

    def start_node(self, node_id: int, timeout: float = 120.0) -> bool:
        """Start one node again (with its data as it was) and wait until its broker is
        registered; True when this call started it."""
        node = self.node(node_id)
        if node.pid() is not None:
            return False
        node.launch()
        try:
            self.wait_registered(timeout, [node_id])
        except BaseException:
            node.stop()
            raise
        return True

    def serve_also_on(self, addresses: Dict[int, str]) -> None:
        """Have node ``i`` also serve PLAINTEXT clients on ``addresses[i]``, on a port of its own,
        from its next start on (see ``extra_bootstrap_servers``)."""
        for node_id, address in addresses.items():
            node = self.node(node_id)
            node.extra_address, node.extra_port = address, free_port()

    @property
    def extra_bootstrap_servers(self) -> str:
        return ",".join(f"{node.extra_address}:{node.extra_port}" for node in self.nodes if node.extra_address)

    def pause_node(self, node_id: int) -> Optional[int]:
        """SIGSTOP one node: it holds its connections and answers nothing, like a hung host."""
        return self.node(node_id).signal(signal.SIGSTOP)

    def resume_node(self, node_id: int) -> Optional[int]:
        return self.node(node_id).signal(signal.SIGCONT)

    def registered_brokers(self, timeout: float = 5.0) -> Dict[int, bool]:
        """The brokers the cluster knows, id -> fenced (a fenced broker is registered but has
        missed its heartbeats: it leads nothing)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            request_timeout_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),
        )
        try:
            brokers = admin.describe_cluster()["brokers"]
        finally:
            admin.close()
        return {broker["broker_id"]: bool(broker.get("is_fenced", False)) for broker in brokers}

    def wait_registered(self, timeout: float, node_ids: Optional[Iterable[int]] = None) -> None:
        """Until the brokers of ``node_ids`` (all by default) are registered and unfenced."""
        from kafka.errors import KafkaError

        wanted = set(node_ids) if node_ids is not None else {node.node_id for node in self.nodes}
        deadline = time.monotonic() + timeout
        missing = wanted
        while time.monotonic() < deadline:
            for node_id in wanted:
                node = self.node(node_id)
                if node.pid() is None:
                    raise RuntimeError(
                        f"Kafka node {node_id} exited during start-up; "
                        f"see {node.home / 'stdout.log'} and {node.log_file}"
                    )
            try:
                brokers = self.registered_brokers(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                missing = {node_id for node_id in wanted if brokers.get(node_id, True)}
                if not missing:
                    return
            except KafkaError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"Kafka node(s) {', '.join(map(str, sorted(missing)))} on {self.bootstrap_servers} "
            f"not registered within {timeout:g}s; see {self.home}/node-*/server.log"
        )

    def status_lines(self) -> List[str]:
        return [f"node {node.node_id} pid {node.pid() or '-'} port {node.port}" for node in self.nodes]


def _wait_exit(node: LocalKafka, pid: int, deadline: float) -> None:
    """Until ``pid`` is gone, SIGKILL after ``deadline``; then the node's pid file goes too."""
    while node.pid() is not None and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if node.pid() is not None:
        os.kill(pid, signal.SIGKILL)
        while node.pid() is not None:
            _reap(pid)
            time.sleep(0.1)
    node.pid_file.unlink(missing_ok=True)


def parser() -> argparse.ArgumentParser:
    """broker.py's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--home", default=".kafka", help="data, config, log and pid folder")
    parser.add_argument(
        "--port", type=int, default=None, help="client port (of node 1; node i: PORT+i-1); default KAFKA_PORT or 9092"
    )
    parser.add_argument("--nodes", type=int, default=1, help="with start: 1 (default), or 3 for a cluster")
    parser.add_argument(
        "--kafka-version",
        metavar="X.Y.Z",
        help=f"with fetch and start: this release of Apache Kafka, {'.'.join(map(str, OLDEST_KAFKA))} or later, "
        "its jars in infra/kafka/libs/kafka-X.Y.Z (default: the one pom.xml pins)",
    )
    return parser


def main(argv: Optional[list] = None) -> int:
    command_line = parser()
    args = command_line.parse_args(argv)
    if args.nodes < 1:
        command_line.error("--nodes: 1 or more")
    try:
        libs_folder(args.kafka_version)
    except ValueError as error:
        command_line.error(str(error))
    port = args.port if args.port is not None else int(os.environ.get("KAFKA_PORT", "9092"))
    if args.action != "fetch" and (args.nodes > 1 or LocalKafkaCluster.holds_cluster(Path(args.home))):
        return _cluster_main(args, port)
    broker = LocalKafka(Path(args.home), port=port, kafka_version=args.kafka_version)
    if args.action == "fetch":
        print(f"Kafka jars in {fetch_jars(quiet=False, version=args.kafka_version)}")
    elif args.action == "start":
        started = broker.start()
        verb = "started" if started else "already running"
        print(f"Kafka {verb} on {broker.bootstrap_servers} (pid {broker.pid()}, log {broker.log_file})")
    elif args.action == "stop":
        pid = broker.pid()
        print(f"Kafka stopped (pid {pid})" if broker.stop() else "Kafka was not running")
    else:
        pid = broker.pid()
        print(f"Kafka running, pid {pid}" if pid else "Kafka not running")
        return 0 if pid else 1
    return 0


def _cluster_main(args: argparse.Namespace, port: int) -> int:
    if args.action != "start" and not LocalKafkaCluster.holds_cluster(Path(args.home)):
        print(f"no Kafka cluster in {args.home}")
        return 1
    try:
        if args.action == "start":
            cluster = LocalKafkaCluster(Path(args.home), nodes=args.nodes, port=port, kafka_version=args.kafka_version)
        else:
            cluster = LocalKafkaCluster.existing(Path(args.home))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.action == "start":
        began = time.monotonic()
        try:
            started = cluster.start()
        except (RuntimeError, TimeoutError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        verb = f"started in {time.monotonic() - began:.1f}s" if started else "already running"
        print(f"Kafka cluster of {len(cluster.nodes)} nodes {verb} (logs {cluster.home}/node-<id>/server.log)")
        print("\n".join(cluster.status_lines()))
        print(f"bootstrap servers {cluster.bootstrap_servers}")
    elif args.action == "stop":
        stopped = cluster.stop()
        print(
            f"Kafka cluster stopped (nodes {', '.join(map(str, stopped))})"
            if stopped
            else "Kafka cluster was not running"
        )
    else:
        print("\n".join(cluster.status_lines()))
        return 0 if all(cluster.pids().values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
