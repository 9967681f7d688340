"""The Kafka connection settings and the kafka-python clients built from them (no pyspark).

Shared by the producer, the Kafka source's preflight check and the tests. Spark's own options
for the same settings are rendered by the Kafka source (``pipeline_lib.sources.kafka``).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic, OffsetSpec
from kafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailedError, TopicAlreadyExistsError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
from pydantic import Field, field_validator, model_validator

from pipeline_lib.config import Settings, require
from pipeline_lib.errors import ConfigError, PipelineError

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# Environment variables for the connection, each naming a field of the ``kafka`` section.
KAFKA_ENVIRONMENT = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "KAFKA_TOPIC": "kafka.topic",
    "KAFKA_SECURITY_PROTOCOL": "kafka.security_protocol",
    "KAFKA_SASL_MECHANISM": "kafka.sasl_mechanism",
    "KAFKA_SASL_USERNAME": "kafka.sasl_username",
    "KAFKA_SASL_PASSWORD": "kafka.sasl_password",
    "KAFKA_SSL_CAFILE": "kafka.ssl_cafile",
    "KAFKA_SSL_CERTFILE": "kafka.ssl_certfile",
    "KAFKA_SSL_KEYFILE": "kafka.ssl_keyfile",
    "KAFKA_SSL_PASSWORD": "kafka.ssl_password",
}

_BOOTSTRAP_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def topic_name(value: str) -> str:
    """``value`` if Kafka accepts it as a topic name, else a ValueError saying what it accepts."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) is None:
        raise ValueError(f"{value!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; 1-249 chars)")
    return value


class KafkaSettings(Settings):
    """Where the broker is and how to authenticate.

    >>> KafkaSettings(bootstrap_servers="127.0.0.1:9092").client_options()
    {'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "input-data"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[str] = Field(default=None, repr=False)
    ssl_cafile: Optional[str] = None  # PEM: the CA that signed the broker's certificate
    ssl_certfile: Optional[str] = None  # PEM: this client's certificate (mutual TLS)
    ssl_keyfile: Optional[str] = None  # PEM: this client's private key
    ssl_password: Optional[str] = Field(default=None, repr=False)  # of an encrypted key file

    @field_validator("bootstrap_servers")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for address in value.split(","):
            match = _BOOTSTRAP_ADDRESS.match(address.strip())
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"{address.strip()!r} is not host:port (port 1-65535); give a comma-separated list")
        return value

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        return topic_name(value)

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _existing_file(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "KafkaSettings":
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise _field_error(
                    "sasl_mechanism",
                    f"is required with {self.security_protocol}; allowed: {', '.join(SASL_MECHANISMS)}",
                )
            for name in ("sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise _field_error(name, f"is required with {self.security_protocol}")
        elif self.sasl_mechanism is not None:
            raise _field_error(
                "sasl_mechanism", f"needs security_protocol SASL_PLAINTEXT or SASL_SSL, not {self.security_protocol}"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise _field_error(
                "ssl_keyfile", "ssl_certfile and ssl_keyfile go together (a client certificate and its key)"
            )
        return self

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def client_options(self) -> Dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin clients."""
        options: Dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.uses_ssl:
            # Hostname checks stay on: a certificate must name the broker it is served by.
            options["ssl_check_hostname"] = True
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
                if getattr(self, name):
                    options[name] = getattr(self, name)
        return options


def _field_error(name: str, message: str) -> ValueError:
    # A model-level check has no location in pydantic's error; config.parse reads it from here.
    return ValueError(f"{name}: {message}")


class KafkaUnavailableError(PipelineError):
    """The broker could not be reached, or refused the credentials, within the time allowed."""


class KafkaAuthenticationError(KafkaUnavailableError):
    """The broker answered and refused the credentials."""


class KafkaTlsError(KafkaUnavailableError):
    """The TLS handshake failed: the broker's certificate was not trusted, or the broker
    refused this client's certificate."""


def describe(error: BaseException) -> str:
    """``ErrorType: first line of its message``, without repeating the type name.

    >>> describe(ValueError("ValueError: bad\\nmore"))
    'ValueError: bad'
    """
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text[len(name) + 2 :] if text.startswith(f"{name}: ") else text
    return f"{name}: {text}" if text else name


def connection_error(
    kafka: KafkaSettings,
    timeout: float,
    error: BaseException,
    refusal: Optional[str] = None,
    tls_failure: Optional["TlsFailure"] = None,
    closed_on_login: bool = False,
) -> KafkaUnavailableError:
    """The error for a client that could not bootstrap: refused credentials when the broker
    said so (``refusal``, its reason), a failed TLS handshake (``tls_failure``), a login the
    broker ended by closing the connection (``closed_on_login``), otherwise a broker that did
    not answer in time."""
    if refusal is not None:
        return KafkaAuthenticationError(
            f"Kafka at {kafka.bootstrap_servers} refused the credentials of user "
            f"{kafka.sasl_username!r} ({kafka.sasl_mechanism}): {refusal}"
        )
    if tls_failure is not None:
        return KafkaTlsError(tls_failure.sentence(kafka))
    if closed_on_login and kafka.sasl_mechanism:
        # The broker answered, then closed the connection on the login before its reason arrived.
        return KafkaAuthenticationError(
            f"Kafka at {kafka.bootstrap_servers} refused the login of user {kafka.sasl_username!r} "
            f"({kafka.sasl_mechanism}): it closed the connection without sending its reason"
        )
    return KafkaUnavailableError(
        f"cannot reach Kafka at {kafka.bootstrap_servers} within {timeout:g}s: {describe(error)}"
    )


# OpenSSL's words for a broker certificate this client does not trust, and for the alerts a
# broker sends when it does not accept this client's certificate (or wanted one and got none).
_SERVER_NOT_TRUSTED = ("CERTIFICATE_VERIFY_FAILED",)
_CLIENT_REFUSED = (
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_UNKNOWN_CA",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_HANDSHAKE_FAILURE",
    "ALERT_ACCESS_DENIED",
)
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\] ([^(\n]*)")


class TlsFailure:
    """A TLS handshake failure as OpenSSL worded it: who refused whose certificate."""

    def __init__(self, code: str, text: str):
        self.code = code
        self.text = text.strip()

    @property
    def server_not_trusted(self) -> bool:
        return self.code in _SERVER_NOT_TRUSTED

    def sentence(self, kafka: KafkaSettings) -> str:
        if self.server_not_trusted and "mismatch" in self.text:
            # OpenSSL's "Hostname mismatch" or "IP address mismatch": a trusted certificate, of another host.
            return (
                f"the TLS certificate of Kafka at {kafka.bootstrap_servers} does not name the host in "
                f"bootstrap_servers ({self.text})"
            )
        if self.server_not_trusted:
            trust = (
                f"the CA in ssl_cafile {kafka.ssl_cafile}" if kafka.ssl_cafile else "the system's CAs (no ssl_cafile)"
            )
            return (
                f"the TLS certificate of Kafka at {kafka.bootstrap_servers} is not trusted: it is not signed by "
                f"{trust} ({self.text})"
            )
        given = (
            f"ssl_certfile {kafka.ssl_certfile}"
            if kafka.ssl_certfile
            else "none given: set ssl_certfile and ssl_keyfile"
        )
        return f"Kafka at {kafka.bootstrap_servers} refused the TLS client certificate ({given}): {self.text}"


def _delivering_bytes_before_the_close(sock_recv: Any) -> Any:
    """kafka-python's ``_sock_recv`` made to hand over the bytes that came with a close.

    A broker refusing a login sends its answer and closes the connection at once; on loopback
    the two mostly arrive in one read, and kafka-python 3.0.12 then drops the answer and reports only
    the disconnect, so the refusal's reason is lost and the client retries until its time-out.
    The bytes are returned on their own: a closed socket stays readable, and the next read
    reports the close.
    """

    def read(transport: Any) -> Any:
        data, error = sock_recv(transport)
        return (data, None) if data else (data, error)

    return read


for _transport in (KafkaTCPTransport, KafkaSSLTransport):
    if "_sock_recv" in vars(_transport):
        _transport._sock_recv = _delivering_bytes_before_the_close(vars(_transport)["_sock_recv"])


class AuthenticationRefusals(logging.Handler):
    """Collects the broker's reasons for refusing a SASL login, and TLS handshake failures,
    while it is installed.

    kafka-python retries a refused login or a failed handshake until its bootstrap times out and
    then reports only the time-out; the cause itself it reports through its logger: the broker's
    message for a login, OpenSSL's for a handshake.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.reasons: List[str] = []
        self.tls_failures: List[TlsFailure] = []
        self.closed_by_broker = False  # a connection made, then closed by the other side

    def emit(self, record: logging.LogRecord) -> None:
        for argument in record.args if isinstance(record.args, tuple) else ():
            if isinstance(argument, SaslAuthenticationFailedError):
                # "[Error 58] SaslAuthenticationFailedError: SaslAuthenticationFailedError: <broker's words>"
                self.reasons.append(str(argument).strip().rsplit("SaslAuthenticationFailedError: ", 1)[-1])
            elif isinstance(argument, KafkaConnectionError) and "socket disconnected" in str(argument):
                self.closed_by_broker = True
            elif isinstance(argument, (KafkaError, ssl.SSLError)):
                match = _SSL_REASON.search(str(argument))
                if match and any(code in match.group(1) for code in _SERVER_NOT_TRUSTED + _CLIENT_REFUSED):
                    self.tls_failures.append(TlsFailure(match.group(1), match.group(2)))

    @property
    def reason(self) -> Optional[str]:
        return self.reasons[-1] if self.reasons else None

    @property
    def tls_failure(self) -> Optional[TlsFailure]:
        return self.tls_failures[-1] if self.tls_failures else None

    def __enter__(self) -> "AuthenticationRefusals":
        logger = logging.getLogger("kafka")
        self._level = logger.level
        logger.addHandler(self)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("kafka")
        logger.removeHandler(self)
        logger.setLevel(self._level)


# A refused login or certificate is final, but kafka-python retries it until its bootstrap times
# out: bootstrapping in attempts, the first this long and each next twice as long (so that a
# broker slow to answer still gets one long enough), lets a refusal end the wait at the first.
FIRST_BOOTSTRAP_ATTEMPT_SECONDS = 1.0


class _AdminClient(KafkaAdminClient):
    """A KafkaAdminClient that stops its network thread when its bootstrap fails."""

    def __init__(self, **configs: Any):
        try:
            super().__init__(**configs)
        except BaseException:
            if hasattr(self, "_net"):
                self._closed = False
                self.close()
            raise


def admin_client(kafka: KafkaSettings, timeout: float) -> KafkaAdminClient:
    """An admin client that has answered a metadata request, or :class:`KafkaUnavailableError`:
    at once when the broker refuses the login or a certificate, else after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    longest = FIRST_BOOTSTRAP_ATTEMPT_SECONDS
    with AuthenticationRefusals() as refusals:
        while True:
            attempt = min(longest, max(deadline - time.monotonic(), 0.0))
            longest *= 2
            try:
                return _AdminClient(
                    request_timeout_ms=int(timeout * 1000),
                    bootstrap_timeout_ms=int(attempt * 1000),
                    client_id="pipeline-admin",
                    **kafka.client_options(),
                )
            except KafkaError as error:
                refused = refusals.reason is not None or refusals.tls_failure is not None
                if refused or time.monotonic() >= deadline - 0.01:
                    raise connection_error(
                        kafka, timeout, error, refusals.reason, refusals.tls_failure, refusals.closed_by_broker
                    ) from None


@contextmanager
def _admin(kafka: KafkaSettings, timeout: float) -> Iterator[KafkaAdminClient]:
    """A connected admin client, closed afterwards; its Kafka errors become KafkaUnavailableError."""
    admin = admin_client(kafka, timeout)
    try:
        yield admin
    except TopicAlreadyExistsError:
        raise  # an answer, not an outage: ensure_topic handles it
    except KafkaError as error:
        raise KafkaUnavailableError(f"Kafka at {kafka.bootstrap_servers}: {describe(error)}") from None
    finally:
        admin.close()


def topic_exists(kafka: KafkaSettings, timeout: float) -> bool:
    """Whether ``kafka.topic`` exists; checks reachability and credentials on the way."""
    with _admin(kafka, timeout) as admin:
        return kafka.topic in admin.list_topics()


def earliest_offsets(kafka: KafkaSettings, timeout: float) -> Dict[int, int]:
    """The first offset each partition of ``kafka.topic`` still holds, by partition: the records
    before it are gone (deleted by the topic's retention, or by a delete-records request).
    A topic that does not exist has none."""
    with _admin(kafka, timeout) as admin:
        described = admin.describe_topics([kafka.topic])
        partitions = [
            TopicPartition(kafka.topic, entry["partition_index"])
            for topic in described
            if topic["name"] == kafka.topic and not topic["error_code"]
            for entry in topic["partitions"]
        ]
        if not partitions:
            return {}
        found = admin.list_partition_offsets(
            {partition: OffsetSpec.EARLIEST for partition in partitions}, timeout_ms=int(timeout * 1000)
        )
        return {partition.partition: found[partition].offset for partition in partitions}


def ensure_topic(
    kafka: KafkaSettings,
    partitions: int,
    timeout: float,
    replication_factor: Optional[int] = None,
    configs: Optional[Mapping[str, str]] = None,
) -> int:
    """Create ``kafka.topic`` with ``partitions`` (and the topic ``configs``, such as
    ``{"retention.ms": "3600000"}``) if missing: its replication factor when this call created
    it (true), 0 when the topic was there (false); a topic that was there keeps its own configs.

    ``replication_factor`` None: 3 when the cluster has three brokers or more, else 1. A
    factor above the cluster's brokers is a :class:`ConfigError` (``replication_factor``). The
    brokers counted are those registered, fenced ones too: a cluster of three with one node
    down still means three replicas, which the broker then refuses to place, rather than a
    topic quietly left with one.
    """
    try:
        with _admin(kafka, timeout) as admin:
            brokers = len(admin.describe_cluster()["brokers"])
            if replication_factor is not None and replication_factor > brokers:
                raise ConfigError(
                    "replication_factor",
                    f"{replication_factor} is more than the {brokers} broker(s) of the cluster at "
                    f"{kafka.bootstrap_servers}",
                )
            if kafka.topic in admin.list_topics():
                return 0
            replicas = replication_factor if replication_factor is not None else (3 if brokers >= 3 else 1)
            topic = NewTopic(kafka.topic, partitions, replicas, topic_configs=dict(configs or {}))
            admin.create_topics([topic], timeout_ms=int(timeout * 1000))
            return replicas
    except TopicAlreadyExistsError:
        return 0


def jaas_quote(value: str) -> str:
    """``value`` as a quoted JAAS option value, so no character can end or change the entry.

    >>> print(jaas_quote('p"a\\\\ss;'))
    "p\\"a\\\\ss;"
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def spark_options(kafka: KafkaSettings) -> Dict[str, str]:
    """The connection settings as ``kafka.``-prefixed options of Spark's Kafka source and sink.

    >>> spark_options(KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
    {'kafka.bootstrap.servers': '127.0.0.1:9092', 'kafka.security.protocol': 'PLAINTEXT'}
    """
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "kafka.security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        module = "plain.PlainLoginModule" if kafka.sasl_mechanism == "PLAIN" else "scram.ScramLoginModule"
        options["kafka.sasl.mechanism"] = kafka.sasl_mechanism
        options["kafka.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.{module} required "
            f"username={jaas_quote(kafka.sasl_username or '')} password={jaas_quote(kafka.sasl_password or '')};"
        )
    if kafka.uses_ssl and kafka.ssl_cafile:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = kafka.ssl_cafile
    if kafka.uses_ssl and kafka.ssl_certfile and kafka.ssl_keyfile:
        # Inline PEM rather than file paths: executors on other hosts need no copy of the files.
        options["kafka.ssl.keystore.type"] = "PEM"
        options["kafka.ssl.keystore.certificate.chain"] = _read(kafka.ssl_certfile)
        options["kafka.ssl.keystore.key"] = _java_readable_key(kafka.ssl_keyfile, kafka.ssl_password)
        if kafka.ssl_password:
            options["kafka.ssl.key.password"] = kafka.ssl_password
    return options


# PBES2's object identifier (RFC 8018), DER-encoded: how openssl 3 and Python's cryptography
# encrypt a PKCS#8 key by default.
_PBES2 = bytes.fromhex("06092a864886f70d01050d")


def _java_readable_key(path: str, password: Optional[str]) -> str:
    """The PEM key of ``path`` for Kafka's Java client, or a ConfigError saying why it cannot read
    it. kafka-python reads a PBES2-encrypted key; the Java client's PEM loader fails on one."""
    text = _read(path)
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" not in text:
        return text
    require(bool(password), "kafka.ssl_password", f"is needed: {path} is an encrypted key")
    body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
    require(
        _PBES2 not in base64.b64decode(body)[:32],
        "kafka.ssl_keyfile",
        f"{path} is encrypted with PBES2, which Spark's Kafka client cannot read; re-encrypt it with "
        "`openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES`, or give it unencrypted with file permissions 0600",
    )
    return text


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()
