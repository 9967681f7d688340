"""A single-node Apache Kafka (KRaft: broker and controller in one JVM) from Kafka's own jars.

No Docker and no tarball: Maven fetches ``org.apache.kafka:kafka_2.13`` and its dependencies
into ``infra/kafka/libs`` (pom.xml beside this file). Used by ``make kafka-up``/``kafka-down``
and by the tests' session fixture::

    python infra/kafka/broker.py start --home .kafka --port 9092
    python infra/kafka/broker.py stop --home .kafka
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

HERE = Path(__file__).resolve().parent
LIBS = HERE / "libs"
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


def fetch_jars(quiet: bool = True) -> Path:
    """Resolve the broker's and the tools' jars with Maven once; later calls find them in place."""
    if not (any(LIBS.glob("kafka_2.13-*.jar")) and any(LIBS.glob("kafka-tools-[0-9]*.jar"))):
        command = [
            "mvn", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={LIBS}",
        ]
        subprocess.run(command + (["-q"] if quiet else []), check=True)
    return LIBS


_PORTS_GIVEN: set = set()


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the kernel
    picked itself could be taken by an outgoing connection before the broker binds it. Never the
    same port twice in one process."""
    low, high = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
            high = min(high, int(ranges.read().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port between {low} and {high}")


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
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


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
    signed by ``tls.cafile`` required on ``mtls_port``.
    """

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
    ):
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
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map="
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,MTLS:SSL",
            f"log.dirs={properties_value(str(self.home / 'data'))}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Room for oversized test payloads, which the pipeline must quarantine, not lose.
            "message.max.bytes=4194304",
        ]
        if self.sasl_users or self.scram_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            # Every name and password is quoted and escaped: any character stays part of it.
            users = " ".join(f"{jaas_quote('user_' + name)}={jaas_quote(password)}" for name, password in self.sasl_users.items())
            scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            lines += [
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config=" + properties_value(
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                ),
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
        lines += [f"listeners={','.join(listeners)}", f"advertised.listeners={','.join(advertised)}"]
        return "\n".join(lines) + "\n"

    def _scram_arguments(self) -> list:
        """``--add-scram`` arguments of the storage format, one per user and mechanism.

        Kafka's parser of these arguments splits on commas and knows no escape, so the password
        is given already salted (base64): any character in it survives. A name cannot hold a comma.
        """
        arguments = []
        for name, password in self.scram_users.items():
            if "," in name or name.startswith('"') or not name:
                raise ValueError(f"SCRAM user name {name!r} cannot be given to kafka-storage (no comma, no leading quote)")
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
            "java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", f"{fetch_jars()}/*", main_class, *args,
        ]

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker unless it already runs; True when this call started it."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(self._properties())
        (self.home / "log4j2.properties").write_text(
            LOG4J2.format(log=self.log_file, level=os.environ.get("KAFKA_LOG_LEVEL", "INFO"))
        )
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(config),
                    *self._scram_arguments(),
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        with open(self.home / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(config)), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        try:
            self.wait_ready(timeout)
        except TimeoutError:
            self.stop()
            raise
        return True

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


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--home", default=".kafka", help="data, config, log and pid folder")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    args = parser.parse_args(argv)
    broker = LocalKafka(Path(args.home), port=args.port)
    if args.action == "fetch":
        print(f"Kafka jars in {fetch_jars(quiet=False)}")
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


if __name__ == "__main__":
    sys.exit(main())
