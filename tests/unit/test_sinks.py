"""Each sink on its own: a local SparkSession, folders under tmp_path, no broker.

The runner's part of a batch (ask the ledger, write, commit, mark) is ``deliver``; a batch Spark
replays after a crash is delivered again with the same id and rows.
"""

import decimal
import math
import random
import re
import struct

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.run import deliver
from pipeline_lib.sinks import FolderLedger, MemoryLedger, Sink, build_sink, ledger_for
from pipeline_lib.sinks.files import PUBLISHING, STAGING, Route, RoutedLines, can_stage_together, stage_in_one_pass
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


def plain_texts(spark, values):
    from pipeline_lib.sinks.csv import plain_decimal

    rows = spark.createDataFrame([(value,) for value in values], "x double")
    return [row.text for row in rows.select(plain_decimal(F.col("x")).alias("text")).collect()]


def shortest_plain(value):
    """Python's shortest digits of ``value`` (repr), as plain decimal text."""
    text = format(decimal.Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def test_a_double_of_at_most_six_decimals_is_written_as_its_shortest_plain_text(spark):
    draw = random.Random(7)
    values = [round(draw.uniform(-(2.0**31), 2.0**31), draw.randint(0, 6)) for _ in range(3000)]
    values += [1715181600.123, -0.5, 2147483647.999999, 0.000001, 100.0]

    assert plain_texts(spark, values) == [shortest_plain(value) or "0" for value in values]


def test_a_double_from_one_to_ten_million_is_written_as_its_shortest_plain_text(spark):
    draw = random.Random(5)
    values = [draw.uniform(1, 1e7) * draw.choice((1, -1)) for _ in range(3000)] + [1.0, 9999999.999999998, 1.5]

    assert plain_texts(spark, values) == [shortest_plain(value) for value in values]


def test_any_double_is_written_as_text_that_reads_back_to_it(spark):
    draw = random.Random(11)
    values = [struct.unpack("d", struct.pack("Q", draw.getrandbits(64)))[0] for _ in range(3000)]
    values = [value for value in values if math.isfinite(value)] + [2.0**31, 9999999999.999999, 1.25e-11, 3e20]

    assert [float(text) for text in plain_texts(spark, values)] == values


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


ORDERS = "id long, amount double, currency string"


@pytest.fixture
def orders(spark):
    rows = [(1, 1.5, "EUR"), (2, 2.5, "USD"), (3, 3.0, "EUR"), (4, 4.0, "EUR"), (5, 5.5, None)]
    return spark.createDataFrame(rows, ORDERS).repartition(2)


def partitioned_sink(folder, format_name="csv", **options):
    return build_sink({"format": format_name, "path": str(folder), "partition_by": ["currency"], **options}, "output")


def partition_files(folder):
    """Each published file by its folder, as a plain recursive glob finds it."""
    return sorted(str(path.relative_to(folder)) for path in folder.glob("**/batch-*") if "_staging" not in path.parts)


def duckdb_rows(folder, extension="csv"):
    import duckdb

    reader = "read_csv" if extension == "csv" else "read_parquet"
    query = f"SELECT id, amount, currency FROM {reader}('{folder}/*/*.{extension}', hive_partitioning = true) ORDER BY id"
    return duckdb.sql(query).fetchall()


def pandas_rows(folder):
    """pandas over a recursive glob, the column read from each file's folder name."""
    from urllib.parse import unquote

    import pandas

    frames = []
    for path in sorted(folder.glob("**/*.csv")):
        key, _, value = path.parent.name.partition("=")
        frames.append(pandas.read_csv(path).assign(**{key: None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)}))
    rows = pandas.concat(frames).sort_values("id")
    return [(int(id_), float(amount), currency) for id_, amount, currency in rows[["id", "amount", "currency"]].itertuples(index=False)]


EXPECTED_ORDERS = [(1, 1.5, "EUR"), (2, 2.5, "USD"), (3, 3.0, "EUR"), (4, 4.0, "EUR"), (5, 5.5, None)]


@pytest.mark.parametrize("format_name", FILE_FORMATS)
def test_a_partitioned_file_sink_publishes_a_batch_in_hive_style_folders(spark, orders, tmp_path, format_name):
    sink = partitioned_sink(tmp_path / "out", format_name)

    deliver(sink, orders, spark, 7, counted(5))

    folders = {name.split("/")[0] for name in partition_files(tmp_path / "out")}
    assert folders == {"currency=EUR", "currency=USD", "currency=__HIVE_DEFAULT_PARTITION__"}
    assert all(re.fullmatch(rf"currency=[^/]+/batch-00000007-part-\d{{5}}\.\S*{format_name}", name) for name in partition_files(tmp_path / "out"))
    held = sink.read(spark).select(F.col("id").cast("long"), F.col("amount").cast("double"), "currency")
    assert_df_equality(held.orderBy("id"), spark.createDataFrame(EXPECTED_ORDERS, ORDERS), ignore_nullable=True)
    assert not list((tmp_path / "out" / STAGING).iterdir())


def test_a_partitioned_csv_batch_reads_the_same_in_duckdb_and_pandas(spark, orders, tmp_path):
    sink = partitioned_sink(tmp_path / "out")

    deliver(sink, orders, spark, 0, counted(5))

    assert duckdb_rows(tmp_path / "out") == EXPECTED_ORDERS
    assert pandas_rows(tmp_path / "out") == EXPECTED_ORDERS


def test_a_partition_value_that_is_no_plain_folder_name_reads_back_as_written(spark, tmp_path):
    rows = spark.createDataFrame([(1, 1.0, "a/b c=d%")], ORDERS)
    sink = partitioned_sink(tmp_path / "out")

    deliver(sink, rows, spark, 0, counted(1))

    assert duckdb_rows(tmp_path / "out") == [(1, 1.0, "a/b c=d%")]
    assert pandas_rows(tmp_path / "out") == [(1, 1.0, "a/b c=d%")]


def test_a_partitioned_sink_replaces_a_replayed_batch_in_every_folder(spark, orders, tmp_path):
    sink = partitioned_sink(tmp_path / "out")
    sink.write(orders, 3)
    sink.commit(spark, 3, 5)  # published, then the crash came before the ledger's mark

    deliver(sink, orders, spark, 3, counted(5))

    assert duckdb_rows(tmp_path / "out") == EXPECTED_ORDERS
    assert pandas_rows(tmp_path / "out") == EXPECTED_ORDERS


def test_a_partitioned_batch_cut_short_between_renames_is_written_once_on_replay(spark, orders, tmp_path):
    sink = partitioned_sink(tmp_path / "out")
    sink.write(orders, 4)
    staged = sorted((tmp_path / "out" / STAGING / "batch-4").glob("currency=*/part-*"))
    (tmp_path / "out" / "currency=EUR").mkdir()
    staged[0].rename(tmp_path / "out" / "currency=EUR" / "batch-00000004-part-00000.csv")  # as commit's first rename
    (tmp_path / "out" / PUBLISHING).mkdir()
    (tmp_path / "out" / PUBLISHING / "4").write_text("currency=EUR/batch-00000004-part-00000.csv\n")

    deliver(sink, orders, spark, 4, counted(5))

    assert pandas_rows(tmp_path / "out") == EXPECTED_ORDERS
    assert (tmp_path / "out" / PUBLISHING / "4").read_text().split() == partition_files(tmp_path / "out")


def test_a_replayed_batch_never_holds_a_row_both_published_and_staged(spark, orders, tmp_path):
    sink = partitioned_sink(tmp_path / "out")
    deliver(sink, orders, spark, 5, counted(5))

    sink.write(orders, 5)  # the replay's write, before its commit

    assert partition_files(tmp_path / "out") == []
    assert len(list((tmp_path / "out" / STAGING / "batch-5").glob("*/part-*.csv"))) >= 3


def test_max_files_per_batch_bounds_the_files_of_each_folder(spark, orders, tmp_path):
    many = partitioned_sink(tmp_path / "many")
    one = partitioned_sink(tmp_path / "one", max_files_per_batch=1)

    deliver(many, orders.repartition(4), spark, 0, counted(5))
    deliver(one, orders.repartition(4), spark, 0, counted(5))

    assert "currency=EUR/batch-00000000-part-00001.csv" in partition_files(tmp_path / "many")
    assert [name for name in partition_files(tmp_path / "one") if name.startswith("currency=EUR/")] == [
        "currency=EUR/batch-00000000-part-00000.csv"
    ]
    assert pandas_rows(tmp_path / "one") == EXPECTED_ORDERS


def test_an_unpartitioned_sink_bounded_to_one_file_writes_one_file_a_batch(spark, orders, tmp_path):
    sink = build_sink({"format": "csv", "path": str(tmp_path / "out"), "max_files_per_batch": 1}, "output")

    deliver(sink, orders.repartition(3), spark, 2, counted(5))

    assert published(tmp_path / "out") == ["batch-00000002-part-00000.csv"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"partition_by": ["_hidden"]}, "cannot name a folder"),
        ({"partition_by": "currency,currency"}, "names a column twice"),
        ({"partition_by": ["currency"], "columns": ["id", "amount"]}, "columns ['currency'] are not among the columns written: id, amount"),
        ({"partition_by": ["currency"], "columns": ["currency"]}, "leaves no column to write"),
        ({"max_files_per_batch": 0}, "above 0"),
    ],
)
def test_a_bad_partition_setting_names_it(tmp_path, options, message):
    with pytest.raises(ConfigError) as raised:
        build_sink({"format": "csv", "path": str(tmp_path / "out"), **options}, "output")

    assert raised.value.field == f"output.{next(iter(options))}"
    assert message in str(raised.value)


# One pass for two sinks: each row as the line of the sink its route names.
TRICKY = [
    (1, "a,b", 1715181600.123, False),
    (2, 'say "hi"', 0.5, True),
    (3, "  padded  ", None, False),
    (4, "line1\nline2", 100.0, True),
    (5, 'say "hi"', 1.25e-11, False),
    (6, "a,b", None, True),
    (7, "", 3e20, False),
    (8, "back\\slash", -2.5, True),
    (9, "line1\nline2", 0.0, False),
    (10, None, 1e-3, True),
    (11, "back\\slash", -2.5, False),
    (12, "", 3e20, True),
]


PLANNED_WRITE_SETTINGS = ("spark.sql.optimizer.plannedWrite.enabled", "spark.sql.maxConcurrentOutputFileWriters")


@pytest.fixture
def tricky(spark):
    # Four tasks of three rows, each with rows of both routes; two of them start with the second's.
    rows = spark.sparkContext.parallelize(TRICKY, 4)
    return spark.createDataFrame(rows, "id long, text string, number double, rejected boolean")


def lines_of(folder):
    return {name: (folder / name).read_text() for name in published(folder)}


def routed_pass(spark, tricky, first, second, batch_id=5):
    """Stage and publish ``tricky`` in one pass: the accepted rows to ``first``, the rejected to ``second``."""
    columns = {name: F.col(name) for name in ("id", "text", "number")}
    schema = tricky.select(*columns.values()).schema
    routes = [
        Route(first, ~F.col("rejected"), first.line(columns, schema)),
        Route(second, F.col("rejected"), second.line(columns, schema)),
    ]
    assert can_stage_together(spark, [first, second])
    stage_in_one_pass(tricky, RoutedLines(routes), batch_id)
    first.commit(spark, batch_id, 6)
    second.commit(spark, batch_id, 6)


@pytest.mark.parametrize("format_name", ["csv", "json"])
def test_one_pass_staging_publishes_the_lines_each_sinks_own_write_would(spark, tricky, tmp_path, format_name):
    routed = (file_sink(format_name, tmp_path / "one" / "first"), file_sink("json", tmp_path / "one" / "second"))
    routed_pass(spark, tricky, *routed)
    for folder, rejected in (("first", False), ("second", True)):
        own = file_sink(format_name if folder == "first" else "json", tmp_path / "own" / folder)
        own.write(tricky.where(F.col("rejected") == rejected).drop("rejected"), 5)
        own.commit(spark, 5, 6)

        def data_lines(root):
            texts = lines_of(root).values()
            return sorted(line for text in texts for line in text.splitlines(keepends=True) if line != "id,text,number\n")

        assert data_lines(tmp_path / "one" / folder) == data_lines(tmp_path / "own" / folder)


def test_one_pass_staging_starts_every_csv_file_with_its_header_once(spark, tricky, tmp_path):
    output = file_sink("csv", tmp_path / "output")
    routed_pass(spark, tricky, output, file_sink("json", tmp_path / "quarantine"))

    files = lines_of(tmp_path / "output")
    assert len(files) == 4 and all(name.endswith(".csv") for name in files)
    assert all(text.startswith("id,text,number\n") and text.count("id,text,number\n") == 1 for text in files.values())
    held = spark.read.options(header=True, multiLine=True, inferSchema=True).csv(str(tmp_path / "output"))
    assert_df_equality(
        held.select("id").orderBy("id"),
        spark.createDataFrame([(row[0],) for row in TRICKY if not row[3]], "id int"),
        ignore_nullable=True,
    )


def test_one_pass_staging_gives_back_the_session_settings_it_changes(spark, tricky, tmp_path):
    # One set by the user beforehand, one left unset.
    spark.conf.set("spark.sql.optimizer.plannedWrite.enabled", "true")
    try:
        routed_pass(spark, tricky, file_sink("csv", tmp_path / "output"), file_sink("json", tmp_path / "quarantine"))
        settings = [spark.conf.get(key, None) for key in PLANNED_WRITE_SETTINGS]
    finally:
        spark.conf.unset("spark.sql.optimizer.plannedWrite.enabled")

    assert settings == ["true", None]


def test_one_pass_staging_is_refused_when_files_roll_over_mid_task(spark, tmp_path):
    sinks = [file_sink("csv", tmp_path / "output"), file_sink("json", tmp_path / "quarantine")]
    spark.conf.set("spark.sql.files.maxRecordsPerFile", "1000")
    try:
        assert not can_stage_together(spark, sinks)
    finally:
        spark.conf.unset("spark.sql.files.maxRecordsPerFile")
    assert can_stage_together(spark, sinks)


def test_a_partitioned_or_binary_sink_has_no_line_of_text(spark, tmp_path):
    schema = spark.range(1).schema
    columns = {"id": F.col("id")}
    partitioned = build_sink({"format": "csv", "path": str(tmp_path / "p"), "partition_by": "id"}, "output")

    assert partitioned.line(columns, schema) is None
    assert file_sink("parquet", tmp_path / "q").line(columns, schema) is None


def test_one_pass_staging_writes_as_many_files_a_task_as_max_files_per_batch_allows(spark, tricky, tmp_path):
    def bounded(format_name, folder):
        return build_sink({"format": format_name, "path": str(tmp_path / folder), "max_files_per_batch": 2}, folder)

    routed_pass(spark, tricky, bounded("csv", "output"), bounded("json", "quarantine"))

    files = lines_of(tmp_path / "output")
    assert len(files) == 2 and all(text.count("id,text,number\n") == 1 for text in files.values())
    assert sum(text.count("\n") for text in lines_of(tmp_path / "quarantine").values()) == 6


def test_a_batch_staged_in_one_pass_and_replayed_is_replaced_not_added(spark, tricky, tmp_path):
    sinks = file_sink("csv", tmp_path / "output"), file_sink("json", tmp_path / "quarantine")
    routed_pass(spark, tricky, *sinks)  # published, then the crash came before the ledgers' marks
    first = {folder: lines_of(tmp_path / folder) for folder in ("output", "quarantine")}

    routed_pass(spark, tricky, *sinks)

    assert {folder: lines_of(tmp_path / folder) for folder in ("output", "quarantine")} == first
    assert not list((tmp_path / "output" / STAGING).iterdir())
