"""Each sink on its own: a local SparkSession, folders under tmp_path, no broker.

The runner's part of a batch (ask the ledger, write, commit, mark) is ``deliver``; a batch Spark
replays after a crash is delivered again with the same id and rows.
"""

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline_lib.errors import PipelineError
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.run import deliver
from pipeline_lib.sinks import FolderLedger, MemoryLedger, Sink, build_sink, ledger_for
from pipeline_lib.sinks.files import PUBLISHING, STAGING
from pipeline_lib.sinks.memory import MemorySink

FILE_FORMATS = ["csv", "json", "parquet"]
SCHEMA = "id long, value int, timestamp double"


@pytest.fixture
def rows(spark):
    return spark.createDataFrame([(1, 75, 1715181600.123), (2, 10, 1715181601.5)], SCHEMA)


def counted(n):
    return lambda: {"rows": n}


def file_sink(format_name, folder):
    return build_sink({"format": format_name, "path": str(folder)}, "output")


def read_back(spark, sink):
    """What the sink holds, in the rows' own types (CSV and JSON readers infer wider ones)."""
    held = sink.read(spark)
    return held.select(*[F.col(name).cast(kind) for name, kind in (("id", "long"), ("value", "int"), ("timestamp", "double"))]).orderBy("id")


def published(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("batch-"))


@pytest.mark.parametrize("format_name", FILE_FORMATS)
def test_a_file_sink_publishes_a_batch_as_whole_files_named_by_batch(spark, rows, tmp_path, format_name):
    sink = file_sink(format_name, tmp_path / "out")

    deliver(sink, rows, spark, 7, counted(2))

    assert_df_equality(read_back(spark, sink), rows.orderBy("id"), ignore_nullable=True)
    assert published(tmp_path / "out") and all(name.startswith("batch-00000007-part-") for name in published(tmp_path / "out"))
    assert not list((tmp_path / "out" / STAGING).iterdir())
    assert ledger_for(sink, spark).written(7)


@pytest.mark.parametrize("format_name", FILE_FORMATS)
def test_a_file_sink_replaces_a_replayed_batch_instead_of_adding_it(spark, rows, tmp_path, format_name):
    sink = file_sink(format_name, tmp_path / "out")
    sink.write(rows, 3)
    sink.commit(spark, 3, 2)  # published, then the crash came before the ledger's mark

    deliver(sink, rows, spark, 3, counted(2))

    assert_df_equality(read_back(spark, sink), rows.orderBy("id"), ignore_nullable=True)


def test_a_file_sink_replaces_a_batch_whose_publication_was_cut_short(spark, rows, tmp_path):
    sink = file_sink("csv", tmp_path / "out")
    sink.write(rows.repartition(2), 4)
    sink.commit(spark, 4, 2)
    (tmp_path / "out" / published(tmp_path / "out")[0]).unlink()  # as if the crash came between two renames

    deliver(sink, rows.repartition(2), spark, 4, counted(2))

    assert sorted(row.id for row in read_back(spark, sink).collect()) == [1, 2]


@pytest.mark.parametrize("format_name", FILE_FORMATS)
def test_a_file_sink_publishes_no_file_for_a_batch_without_rows(spark, rows, tmp_path, format_name):
    sink = file_sink(format_name, tmp_path / "out")

    deliver(sink, rows.where(F.lit(False)), spark, 0, counted(0))
    deliver(sink, None, spark, 1, counted(0))

    assert published(tmp_path / "out") == []
    assert ledger_for(sink, spark).written(0) and ledger_for(sink, spark).written(1)


def test_the_file_sink_lists_what_it_publishes_and_keeps_a_bounded_number_of_lists(spark, rows, tmp_path):
    sink = file_sink("json", tmp_path / "out")

    for batch_id in range(103):
        deliver(sink, None, spark, batch_id, counted(0))
    deliver(sink, rows, spark, 103, counted(2))

    lists = sorted(int(path.name) for path in (tmp_path / "out" / PUBLISHING).iterdir() if path.name.isdigit())
    assert lists == list(range(4, 104))
    assert (tmp_path / "out" / PUBLISHING / "103").read_text().split() == published(tmp_path / "out")


def test_csv_writes_doubles_as_plain_decimals(spark, rows, tmp_path):
    sink = file_sink("csv", tmp_path / "out")

    deliver(sink, rows, spark, 0, counted(2))

    text = "".join(path.read_text() for path in sorted((tmp_path / "out").glob("batch-*.csv")))
    assert "1715181600.123" in text and "E9" not in text


def test_a_folder_ledger_keeps_the_newest_hundred_marks(spark, tmp_path):
    ledger = FolderLedger(spark, str(tmp_path / "out"))

    for batch_id in range(150):
        ledger.mark(batch_id)

    assert (ledger.written(49), ledger.written(50), ledger.written(149)) == (False, True, True)
    assert FolderLedger.has_history(str(tmp_path / "out"))
    assert not FolderLedger.has_history(str(tmp_path / "elsewhere"))


def test_a_memory_ledger_is_shared_by_sinks_of_one_key_and_forgets_on_request():
    first, second = MemoryLedger("unit-ledger"), MemoryLedger("unit-ledger")

    first.mark(5)
    written_before = second.written(5)
    MemoryLedger.forget("unit-ledger")

    assert (written_before, second.written(5)) == (True, False)


def test_the_memory_sink_serves_committed_batches_as_a_view(spark, rows):
    MemorySink.clear("unit_rows")
    sink = build_sink({"format": "memory", "name": "unit_rows"}, "output")

    deliver(sink, rows, spark, 0, counted(2))
    deliver(sink, rows.where("id = 1"), spark, 1, counted(1))

    assert sorted(row.id for row in spark.table("unit_rows").collect()) == [1, 1, 2]
    assert ledger_for(sink, spark).written(1)


def test_the_memory_sink_commits_a_batch_without_rows_without_a_write(spark, rows):
    MemorySink.clear("unit_empty")
    sink = build_sink({"format": "memory", "name": "unit_empty"}, "quarantine")

    deliver(sink, None, spark, 0, counted(0))
    deliver(sink, rows, spark, 1, counted(2))

    assert spark.table("unit_empty").count() == 2


def test_the_memory_sink_adds_a_written_but_uncommitted_batch_once(spark, rows):
    MemorySink.clear("unit_replay")
    sink = build_sink({"format": "memory", "name": "unit_replay"}, "output")
    sink.write(rows, 0)  # the crash came before the commit

    deliver(sink, rows, spark, 0, counted(2))

    assert spark.table("unit_replay").count() == 2


def test_the_console_sink_prints_the_batch(spark, rows, capsys):
    sink = build_sink({"format": "console", "rows": 1}, "output")

    deliver(sink, rows.orderBy("id"), spark, 0, counted(2))

    printed = capsys.readouterr().out
    assert "1715181600.123" in printed and "only showing top 1 row" in printed


def test_the_kafka_sink_refuses_rows_without_its_key_column_before_sending(spark, rows):
    sink = build_sink({"format": "kafka", "topic": "out", "key": "order_id"}, "output", kafka=KafkaSettings())

    with pytest.raises(PipelineError, match="key column 'order_id' is not in the rows to write"):
        sink.write(rows, 0)


def test_the_kafka_sink_alone_is_given_the_kafka_settings():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")

    sink = build_sink({"format": "kafka", "topic": "out"}, "output", kafka=kafka)
    csv = build_sink({"format": "csv", "path": "out"}, "output", kafka=kafka)

    assert sink.kafka is kafka and not hasattr(csv, "kafka")


def test_a_sinks_columns_are_written_in_their_order(spark, rows, tmp_path):
    sink = build_sink({"format": "csv", "path": str(tmp_path / "out"), "columns": "value,id"}, "output")

    deliver(sink, rows, spark, 0, counted(2))

    assert sink.read(spark).columns == ["value", "id"]


def test_a_missing_column_of_a_sink_is_named(spark, rows, tmp_path):
    sink = build_sink({"format": "json", "path": str(tmp_path / "out"), "columns": "id,processed_value"}, "output")

    with pytest.raises(PipelineError, match=r"columns \['processed_value'\] are not in the rows to write"):
        deliver(sink, rows, spark, 0, counted(2))


def test_a_sink_whose_write_drifted_from_the_base_is_refused_where_it_is_defined():
    with pytest.raises(TypeError, match=r"Drifted.write\(self, batch_id\) does not match Sink.write\(self, rows, batch_id\)"):

        class Drifted(Sink):
            def write(self, batch_id):  # type: ignore[override]
                pass


def test_a_sink_whose_commit_drifted_from_the_base_is_refused_where_it_is_defined():
    with pytest.raises(TypeError, match=r"does not match Sink.commit\(self, spark, batch_id, row_count\)"):

        class Drifted(Sink):
            def write(self, rows, batch_id):
                pass

            def commit(self, batch_id):  # type: ignore[override]
                pass


def test_a_sink_without_a_write_cannot_be_built():
    class Unfinished(Sink):
        pass

    with pytest.raises(TypeError, match="abstract method"):
        Unfinished(Sink.Options())
