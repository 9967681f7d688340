"""A batch interrupted at any step of its write is replaced on restart, never added twice,
for Spark's reader and for a plain reader globbing the CSV files alike."""

import re

import pytest

from pipeline_lib.sinks import folders
from tests.conftest import send_raw
from tests.integration.test_faults import assert_each_once, plain_reader_ids
from tests.integration.test_pipeline import produce, read_csv, read_quarantine, stream

# Each step of a batch's write, as the calls of the sinks' folders it makes in order. The run's
# first batch is staged for the output and the quarantine by one write, whose files are then
# moved into each sink's staging folder.
CRASH_POINTS = {
    "staged in one pass, nothing moved": ("move", 1),
    "one staged file moved": ("move", 2),
    "staged, nothing renamed": ("rename", 1),
    "one file renamed": ("rename", 2),
    "every file renamed, batch not marked": ("touch", 1),
    "output marked, quarantine not marked": ("touch", 2),
}


class InjectedCrash(RuntimeError):
    pass


@pytest.fixture
def crash_at(monkeypatch):
    """Make the sinks' folder operation ``name`` fail on its ``nth`` call, as a kill would."""

    def arm(name, nth):
        original = getattr(folders.Folder, name)
        calls = []

        def failing(self, *args):
            calls.append(args)
            if len(calls) == nth:
                raise InjectedCrash(f"{name} call {nth}")
            return original(self, *args)

        monkeypatch.setattr(folders.Folder, name, failing)
        return lambda: monkeypatch.setattr(folders.Folder, name, original)

    return arm


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_batch_interrupted_at_each_step_lands_once_after_restart(point, crash_at, spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 40, partitions=2)
    disarm = crash_at(*CRASH_POINTS[point])
    with pytest.raises(Exception, match="InjectedCrash"):
        stream(spark, bootstrap, topic, tmp_path)
    disarm()
    assert len(set(plain_reader_ids(tmp_path / "output"))) == len(plain_reader_ids(tmp_path / "output"))

    stream(spark, bootstrap, topic, tmp_path)

    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, 41))
    assert_each_once([row["id"] for row in read_csv(spark, tmp_path).select("id").collect()], range(1, 41))


def test_a_batch_interrupted_while_its_files_are_moved_to_the_quarantine_lands_once_in_both_sinks(
    crash_at, spark, bootstrap, topic, tmp_path
):
    good = [f'{{"id": {i}, "value": {i}, "timestamp": 1.0}}'.encode() for i in range(1, 41)]
    bad = [f'{{"id": {i}, "value": "text"}}'.encode() for i in range(41, 51)]
    send_raw(bootstrap, topic, [*good, *bad], partitions=2)
    disarm = crash_at("move", 3)  # the output's two files moved, the quarantine's first not
    with pytest.raises(Exception, match="InjectedCrash"):
        stream(spark, bootstrap, topic, tmp_path)
    disarm()

    stream(spark, bootstrap, topic, tmp_path)

    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, 41))
    quarantined = [row["payload"] for row in read_quarantine(spark, tmp_path).collect()]
    assert sorted(quarantined) == sorted(payload.decode() for payload in bad)


def test_each_batch_is_published_as_whole_files_named_by_batch(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 30, partitions=2)

    stream(spark, bootstrap, topic, tmp_path, **{"source.max_offsets_per_trigger": 10})

    names = sorted(path.name for path in (tmp_path / "output").glob("*.csv"))
    assert all(re.fullmatch(r"batch-\d{8}-part-\d{5}\.csv", name) for name in names), names
    assert len({name.split("-part-")[0] for name in names}) >= 3
    assert not list((tmp_path / "output" / "_staging").glob("*"))
    assert_each_once(plain_reader_ids(tmp_path / "output"), range(1, 31))
