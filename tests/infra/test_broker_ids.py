"""The ids infra/kafka/broker.py formats a broker's storage with."""

import base64

from infra.kafka.broker import new_cluster_id


def test_no_cluster_id_starts_with_a_dash_which_kafkas_tools_would_read_as_an_option():
    ids = [new_cluster_id() for _ in range(5000)]  # one in 64 random ids starts with one

    assert not [text for text in ids if text.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(text + "==")) == 16 for text in ids)
