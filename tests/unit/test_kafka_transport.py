"""kafka-python's socket reads, as pipeline_lib.kafka_client leaves them: bytes that arrive
together with the other side's close are handed over before the close is reported."""

import socket
from types import SimpleNamespace

from kafka.net.transport import KafkaTCPTransport

import pipeline_lib.kafka_client  # noqa: F401  (installs the read)


def test_bytes_sent_just_before_a_close_are_read_and_the_close_comes_on_the_next_read():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.sendall(b"the broker's answer")
    theirs.close()
    transport = SimpleNamespace(_sock=ours)

    first = KafkaTCPTransport._sock_recv(transport)
    second = KafkaTCPTransport._sock_recv(transport)
    ours.close()

    assert first == (b"the broker's answer", None)
    assert second[0] == b"" and "socket disconnected" in str(second[1])
