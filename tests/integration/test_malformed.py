"""Every kind of malformed message, sent raw to the topic, ends in the quarantine with its reason,
raw payload and Kafka coordinates, while the good ones around it are written."""

import base64

from tests.conftest import send_raw
from tests.integration.test_pipeline import read_csv, read_quarantine, stream

ONE_MIB = 1024 * 1024

MALFORMED = {
    b"{this is not json": "invalid JSON",
    b'{"id": 1, "value": 7, "timest': "invalid JSON",
    b"": "payload is empty",
    b'[{"id": 1, "value": 7}]': "expected a JSON object, got an array",
    b"12345": "expected a JSON object, got a scalar",
    b'{"value": 7}': "missing required field 'id'",
    b'{"id": 9}': "missing required field 'value'",
    b'{"id": 9, "value": "75"}': "field 'value' is not a valid int",
    b'{"id": 9, "value": 75.5}': "field 'value' is not a valid int",
    b'{"id": 9, "value": null}': "field 'value' is null",
    b'{"id": "nine", "value": 7}': "field 'id' is not a valid bigint",
    b'{"id": 9, "value": 99999999999}': "field 'value' is not a valid int",
    b'{"id": 9, "value": 7, "pad": "' + b"x" * ONE_MIB + b'"}': f"payload exceeds {256 * 1024} bytes",
    b'\xc3\x28{"id": 9, "value": 7}': "payload is not valid UTF-8",
    None: "payload is null",
}


def test_each_malformed_kind_is_quarantined_with_reason_payload_and_coordinates(spark, bootstrap, topic, tmp_path):
    good = [b'{"id": %d, "value": %d, "timestamp": 1.0}' % (i, i) for i in (1, 2, 3)]
    payloads = [good[0], *MALFORMED, good[1], good[2]]
    sent = send_raw(bootstrap, topic, payloads)

    summary = stream(spark, bootstrap, topic, tmp_path)

    rows = {row["offset"]: row for row in read_quarantine(spark, tmp_path).collect()}
    assert sorted(rows) == list(range(1, 1 + len(MALFORMED)))
    for offset, (payload, reason) in enumerate(MALFORMED.items(), start=1):
        row = rows[offset]
        assert (row["reason"], row["topic"], row["partition"]) == (reason, topic, 0)
        assert row["kafka_timestamp"] is not None
        if payload is None:
            assert row["payload"] is None
        elif reason == "payload is not valid UTF-8":
            assert base64.b64decode(row["payload_base64"]) == payload
        else:
            assert row["payload"].encode("utf-8") == payload
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == [1, 2, 3]
    assert summary.written + summary.quarantined == sent == len(MALFORMED) + 3
