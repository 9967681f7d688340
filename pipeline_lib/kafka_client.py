"""kafka-python clients built from a :class:`KafkaConfig`, shared by the producer and sources."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline_lib.config import KafkaConfig


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached, or refused the credentials, within the time allowed."""


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
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} within {timeout:g}s: {describe(error)}"
        ) from None


def topic_exists(kafka: KafkaConfig, timeout: float) -> bool:
    """Whether ``kafka.topic`` exists; checks reachability and credentials on the way."""
    admin = admin_client(kafka, timeout)
    try:
        return kafka.topic in admin.list_topics()
    except KafkaError as error:
        raise KafkaUnavailableError(f"Kafka at {kafka.bootstrap_servers}: {describe(error)}") from None
    finally:
        admin.close()


def ensure_topic(kafka: KafkaConfig, partitions: int, timeout: float) -> bool:
    """Create ``kafka.topic`` with ``partitions`` if missing; True when this call created it."""
    admin = admin_client(kafka, timeout)
    try:
        if kafka.topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(kafka.topic, partitions, 1)], timeout_ms=int(timeout * 1000))
        return True
    except TopicAlreadyExistsError:
        return False
    except KafkaError as error:
        raise KafkaUnavailableError(f"Kafka at {kafka.bootstrap_servers}: {describe(error)}") from None
    finally:
        admin.close()
