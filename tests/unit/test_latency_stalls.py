"""The real-time latency bench's account of stalls: late records grouped by send time, each
group with the collections that ended in it and where its worst record waited."""

from bench.latency_realtime import Pauses, stalls

BEGIN = 1_000_000.0


def sent_every_tenth_of_a_second(count):
    return {record_id: BEGIN + 0.1 * (record_id - 1) for record_id in range(1, count + 1)}


def test_late_records_sent_close_together_are_one_stall_with_where_its_worst_waited(spark):
    sent = sent_every_tenth_of_a_second(10)
    latencies = {record_id: 0.01 for record_id in sent} | {3: 0.2, 4: 0.15, 10: 0.08}
    appended = {record_id: moment + 0.002 for record_id, moment in sent.items()} | {3: sent[3] + 0.12}
    written = {record_id: moment + 0.005 for record_id, moment in sent.items()} | {3: sent[3] + 0.15}
    pauses = Pauses(spark)
    pauses.jvm.append((sent[3] + 0.05, 30.0))

    found = stalls(sent, appended, written, latencies, pauses, BEGIN)

    assert found == [
        {
            "sent_after_s": 0.2, "records": 2, "worst_ms": 200.0, "worst_until_appended_ms": 120.0,
            "worst_until_written_ms": 150.0, "jvm_gc_ms": 30.0, "python_gc_ms": 0,
        },
        {
            "sent_after_s": 0.9, "records": 1, "worst_ms": 80.0, "worst_until_appended_ms": 2.0,
            "worst_until_written_ms": 5.0, "jvm_gc_ms": 0, "python_gc_ms": 0,
        },
    ]


def test_a_run_without_late_records_has_no_stall(spark):
    sent = sent_every_tenth_of_a_second(5)

    assert stalls(sent, sent, sent, {record_id: 0.01 for record_id in sent}, Pauses(spark), BEGIN) == []
