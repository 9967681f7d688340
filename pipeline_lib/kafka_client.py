"""kafka-python clients built from a :class:`KafkaConfig`, shared by the producer and sources."""

from __future__ import annotations

import socket
import struct
from contextlib import contextmanager
from typing import Iterator

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline_lib.config import KafkaConfig


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached, or refused the credentials, within the time allowed."""


class KafkaAuthenticationError(KafkaUnavailableError):
    """The broker answered and refused the credentials."""


def describe(error: BaseException) -> str:
    """``ErrorType: first line of its message``, without repeating the type name."""
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text[len(name) + 2:] if text.startswith(f"{name}: ") else text
    return f"{name}: {text}" if text else name


def admin_client(kafka: KafkaConfig, timeout: float) -> KafkaAdminClient:
    """An admin client that has answered a metadata request, or :class:`KafkaUnavailableError`."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            request_timeout_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),
            client_id="pipeline-admin",
            **kafka.client_options(),
        )
    except KafkaError as error:
        refusal = _plain_credentials_refusal(kafka, timeout)
        if refusal:
            raise KafkaAuthenticationError(
                f"Kafka at {kafka.bootstrap_servers} refused the credentials of user "
                f"{kafka.sasl_username!r}: {refusal}"
            ) from None
        raise unreachable(kafka, timeout, error) from None


def unreachable(kafka: KafkaConfig, timeout: float, error: BaseException) -> KafkaUnavailableError:
    """The error for a broker that did not answer within ``timeout`` seconds."""
    return KafkaUnavailableError(
        f"cannot reach Kafka at {kafka.bootstrap_servers} within {timeout:g}s: {describe(error)}"
    )


def _plain_credentials_refusal(kafka: KafkaConfig, timeout: float) -> str:
    """The broker's own reason for refusing SASL/PLAIN credentials, or "" (also when it cannot
    tell). kafka-python reports a refused login only as a failed bootstrap, so when one fails
    this asks the broker directly: SaslHandshake v1, then SaslAuthenticate v0 with the token."""
    if kafka.security_protocol != "SASL_PLAINTEXT" or kafka.sasl_mechanism != "PLAIN":
        return ""
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    token = b"\0" + (kafka.sasl_username or "").encode() + b"\0" + (kafka.sasl_password or "").encode()
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            _request(conn, 17, 1, _string(b"PLAIN"))  # SaslHandshake
            response = _request(conn, 36, 0, struct.pack(">i", len(token)) + token)  # SaslAuthenticate
    except (OSError, struct.error):
        return ""
    error_code, message_length = struct.unpack(">hh", response[:4])
    if error_code == 0:
        return ""
    message = response[4:4 + message_length].decode("utf-8", "replace") if message_length >= 0 else ""
    return message or f"error code {error_code}"


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _request(conn: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request with header v1 and return the response body after the correlation id."""
    message = struct.pack(">hhi", api_key, version, 1) + _string(b"pipeline-auth-check") + body
    conn.sendall(struct.pack(">i", len(message)) + message)
    size = struct.unpack(">i", _read(conn, 4))[0]
    return _read(conn, size)[4:]


def _read(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


@contextmanager
def _admin(kafka: KafkaConfig, timeout: float) -> Iterator[KafkaAdminClient]:
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


def topic_exists(kafka: KafkaConfig, timeout: float) -> bool:
    """Whether ``kafka.topic`` exists; checks reachability and credentials on the way."""
    with _admin(kafka, timeout) as admin:
        return kafka.topic in admin.list_topics()


def ensure_topic(kafka: KafkaConfig, partitions: int, timeout: float) -> bool:
    """Create ``kafka.topic`` with ``partitions`` if missing; True when this call created it."""
    try:
        with _admin(kafka, timeout) as admin:
            if kafka.topic in admin.list_topics():
                return False
            admin.create_topics([NewTopic(kafka.topic, partitions, 1)], timeout_ms=int(timeout * 1000))
            return True
    except TopicAlreadyExistsError:
        return False
