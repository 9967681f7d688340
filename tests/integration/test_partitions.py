"""Hive-style output folders on the real broker: a date derived from the event time, each record
once in its folder for Spark, DuckDB and pandas over a recursive glob, across kill -9 and restarts."""

import glob
import json
import time
from pathlib import Path

import pytest

from pipeline_lib.errors import ConfigError
from tests.conftest import send_raw
from tests.integration.test_exactly_once import CRASH_POINTS, crash_at  # noqa: F401  (crash_at: a fixture)
from tests.integration.test_faults import (
    assert_each_once,
    batch_files,
    kill_group,
    start,
    stream_command,
    wait_until,
)
from tests.integration.test_pipeline import stream

DAYS = ["2024-05-08", "2024-05-09", "2024-05-10"]
MIDNIGHT = 1715126400  # 2024-05-08T00:00:00Z
TRANSFORMS = ["add_processed_value", "with_event_time", {"name": "with_event_date", "options": {"source": "event_time"}}]
COLUMNS = ["id", "value", "timestamp", "processed_value", "date"]


def send_days(bootstrap, topic, count):
    """Records 1..count of the seed's shape, record i on day i % 3 of DAYS, over 2 partitions."""
    records = [{"id": i, "value": i % 100, "timestamp": MIDNIGHT + (i % 3) * 86400 + i / 1000} for i in range(1, count + 1)]
    send_raw(bootstrap, topic, [json.dumps(record).encode() for record in records], partitions=2)


def expected_days(count):
    return {i: DAYS[i % 3] for i in range(1, count + 1)}


def spark_days(spark, folder):
    rows = spark.read.csv(str(folder), header=True, schema="id long, value int, timestamp double, processed_value long, date date")
    return [(row.id, str(row.date)) for row in rows.select("id", "date").collect()]


def duckdb_days(folder):
    import duckdb

    query = f"SELECT id, date FROM read_csv('{folder}/**/*.csv', hive_partitioning = true)"
    return [(id_, str(date)) for id_, date in duckdb.sql(query).fetchall()]


def pandas_days(folder):
    """What a reader that knows nothing of Spark sees: pandas over a recursive glob of the CSV
    files, the date from each file's folder."""
    import pandas

    files = sorted(glob.glob(str(folder / "**" / "*.csv"), recursive=True))
    frames = [pandas.read_csv(name).assign(date=Path(name).parent.name.split("=", 1)[1]) for name in files]
    return [(int(id_), date) for id_, date in pandas.concat(frames)[["id", "date"]].itertuples(index=False)]


def assert_each_once_in_its_folder(days, count):
    assert_each_once([id_ for id_, _ in days], range(1, count + 1))
    assert dict(days) == expected_days(count)


def stream_partitioned(spark, bootstrap, topic, folder, **overrides):
    partitioned = {"output.columns": COLUMNS, "output.partition_by": ["date"]}
    return stream(spark, bootstrap, topic, folder, transforms=TRANSFORMS, **partitioned, **overrides)


def test_output_partitioned_by_event_date_lands_once_for_spark_duckdb_and_pandas(spark, bootstrap, topic, tmp_path):
    send_days(bootstrap, topic, 300)

    summary = stream_partitioned(
        spark, bootstrap, topic, tmp_path, **{"output.max_files_per_batch": 1, "source.max_offsets_per_trigger": 100}
    )

    output = tmp_path / "output"
    assert summary.written == 300 and summary.batches >= 3
    assert sorted(path.name for path in output.iterdir() if not path.name.startswith("_")) == [f"date={day}" for day in DAYS]
    names = [path.name for path in output.glob("date=*/*.csv")]
    assert all(name.endswith("-part-00000.csv") for name in names), names  # one file a folder and batch
    assert len({name.split("-part-")[0] for name in names}) == summary.batches
    for days in (spark_days(spark, output), duckdb_days(output), pandas_days(output)):
        assert_each_once_in_its_folder(days, 300)


# A partitioned output is written by Spark's own writer, never in one pass with the quarantine.
WRITE_OF_ITS_OWN = [point for point, (call, _) in CRASH_POINTS.items() if call != "move"]


@pytest.mark.parametrize("point", WRITE_OF_ITS_OWN)
def test_a_partitioned_batch_interrupted_at_each_step_lands_once_after_restart(
    point, crash_at, spark, bootstrap, topic, tmp_path
):
    send_days(bootstrap, topic, 60)
    disarm = crash_at(*CRASH_POINTS[point])
    with pytest.raises(Exception, match="InjectedCrash"):
        stream_partitioned(spark, bootstrap, topic, tmp_path)
    disarm()
    # What the crash left, _staging included: each record at most once, wherever it is.
    left = [id_ for id_, _ in pandas_days(tmp_path / "output")]
    assert len(left) == len(set(left))

    stream_partitioned(spark, bootstrap, topic, tmp_path)

    for days in (spark_days(spark, tmp_path / "output"), duckdb_days(tmp_path / "output"), pandas_days(tmp_path / "output")):
        assert_each_once_in_its_folder(days, 60)


def test_an_unknown_partition_column_is_refused_before_any_query_starts(spark, bootstrap, topic, tmp_path):
    send_days(bootstrap, topic, 3)

    with pytest.raises(
        ConfigError, match=r"^output.partition_by: columns \['day'\] are not in the rows it writes: id, value, timestamp, processed_value$"
    ):
        stream(spark, bootstrap, topic, tmp_path, schema="id long, value int, timestamp double", **{"output.partition_by": ["day"]})

    assert not (tmp_path / "output").exists() and not (tmp_path / "checkpoint").exists()


@pytest.mark.slow
def test_a_partitioned_stream_job_killed_repeatedly_writes_every_record_once_in_its_folder(spark, bootstrap, topic, tmp_path):
    total = 30_000
    send_days(bootstrap, topic, total)
    output_section = {"columns": COLUMNS, "partition_by": ["date"], "max_files_per_batch": 2}
    (tmp_path / "pipeline.yml").write_text(json.dumps({"transforms": TRANSFORMS, "output": output_section}))
    command = stream_command(
        bootstrap, topic, tmp_path, "--config", str(tmp_path / "pipeline.yml"),
        "--trigger", "processing-time=1s", "--max-offsets-per-trigger", "1500",
    )
    kills = []

    # 1: during the very first batch; 2: a batch planned, not committed, after a commit;
    # 3: an arbitrary moment after a commit
    moments = [
        lambda before: "0" in batch_files(tmp_path, "offsets"),
        lambda before: len(batch_files(tmp_path, "commits")) > before and batch_files(tmp_path, "offsets") - batch_files(tmp_path, "commits"),
        None,
    ]
    for moment in moments:
        job = start(command, tmp_path / "stream.log")
        before = len(batch_files(tmp_path, "commits"))
        if moment is None:
            wait_until(lambda: len(batch_files(tmp_path, "commits")) > before, 180, "a batch committed")
            time.sleep(1.3)
        else:
            wait_until(lambda: moment(before), 180, "the kill moment")
        kill_group(job)
        staged = sorted(str(path.relative_to(tmp_path / "output")) for path in (tmp_path / "output").glob("_staging/*/*"))
        kills.append((len(batch_files(tmp_path, "commits")), staged))

    final = start(command[:-4] + ["--trigger", "available-now"], tmp_path / "stream.log")
    assert final.wait(timeout=600) == 0, (tmp_path / "stream.log").read_text()[-3000:]

    assert kills[0][0] == 0, "the first kill came after batch 0 was committed"
    output = tmp_path / "output"
    assert not list(output.glob("_staging/*"))
    for days in (spark_days(spark, output), duckdb_days(output), pandas_days(output)):
        assert_each_once_in_its_folder(days, total)
    files = [Path(name) for name in glob.glob(str(output / "date=*" / "*.csv"))]
    per_folder_and_batch = {}
    for path in files:
        key = (path.parent.name, path.name.split("-part-")[0])
        per_folder_and_batch[key] = per_folder_and_batch.get(key, 0) + 1
    assert max(per_folder_and_batch.values()) <= 2
    print(f"kills (commits, staged at the kill): {kills}; files: {len(files)}")
