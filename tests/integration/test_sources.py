"""The files and rate sources run through the same pipeline as Kafka."""

import threading

import pytest

from tests.integration.test_pipeline import read_csv, read_quarantine, run_in


def run(spark, folder, stop_after=None, **overrides):
    stop = threading.Event()
    if stop_after:
        threading.Timer(stop_after, stop.set).start()
    return run_in(spark, folder, stop_event=stop, **overrides)


def test_files_source_reads_new_json_lines_files_once(spark, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.json").write_text('{"id": 1, "value": 5}\n{"id": 2}\n')
    run(spark, tmp_path, **{"source.type": "files", "source.path": str(incoming)})
    (incoming / "b.json").write_text('{"id": 3, "value": 6}\n')

    second = run(spark, tmp_path, **{"source.type": "files", "source.path": str(incoming)})

    assert second.written == 1
    assert sorted((r["id"], r["processed_value"]) for r in read_csv(spark, tmp_path).collect()) == [(1, 10), (3, 12)]
    (bad,) = read_quarantine(spark, tmp_path).collect()
    assert (bad["payload"], bad["reason"]) == ('{"id": 2}', "missing required field 'value'")
    assert bad["source_file"].endswith("a.json")


@pytest.mark.slow
def test_rate_source_generates_valid_records_until_stopped(spark, tmp_path):
    summary = run(
        spark, tmp_path, stop_after=12,
        **{"source.type": "rate", "source.rows_per_second": 50, "trigger": "processing-time=1s"},
    )

    rows = read_csv(spark, tmp_path).collect()
    assert summary.written == len(rows) > 0 and summary.quarantined == 0
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["processed_value"] == 2 * r["value"] for r in rows)
