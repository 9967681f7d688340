"""Running a plan on a folder of JSON lines (no broker): the reports each batch makes, the
listeners that receive them, and a quarantine in memory."""

import json

import pytest
from pyspark.errors import PySparkException

from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.reports import BatchReport, JsonLinesListener, Listener, RunSummary
from pipeline_lib.run import run_pipeline
from pipeline_lib.sinks.memory import MemorySink


class Collected(Listener):
    def __init__(self):
        self.reports, self.summaries = [], []

    def on_batch(self, report: BatchReport) -> None:
        self.reports.append(report)

    def on_summary(self, summary: RunSummary) -> None:
        self.summaries.append(summary)


def files_pipeline(tmp_path, lines, **overrides):
    incoming = tmp_path / "incoming"
    incoming.mkdir(exist_ok=True)
    (incoming / "part-1.json").write_text("".join(line + "\n" for line in lines))
    return load_pipeline_config(
        overrides={
            "source.type": "files", "source.path": str(incoming), "output.path": str(tmp_path / "output"),
            "quarantine.path": str(tmp_path / "quarantine"), "checkpoint": str(tmp_path / "checkpoint"), **overrides,
        },
        environ={},
    )


GOOD = [json.dumps({"id": i, "value": 10 * i, "timestamp": 1715181600.0 + i}) for i in (1, 2)]


def test_a_memory_quarantine_takes_a_batch_without_rejected_rows(spark, tmp_path):
    MemorySink.clear("unit_quarantine")
    config = files_pipeline(tmp_path, GOOD[:1], **{"quarantine": {"format": "memory", "name": "unit_quarantine"}})

    summary = run_pipeline(spark, config, emit=lambda line: None)

    assert (summary.written, summary.quarantined) == (1, 0)


def test_a_memory_quarantine_holds_the_rejected_rows_with_their_reason(spark, tmp_path):
    MemorySink.clear("unit_quarantine_rows")
    config = files_pipeline(tmp_path, [*GOOD, '{"id": 3}'], **{"quarantine": {"format": "memory", "name": "unit_quarantine_rows"}})

    run_pipeline(spark, config, emit=lambda line: None)

    assert [row.reason for row in spark.table("unit_quarantine_rows").collect()] == ["missing required field 'value'"]


def test_each_batch_report_counts_what_was_read_written_and_quarantined(spark, tmp_path):
    listener = Collected()
    config = files_pipeline(tmp_path, [*GOOD, "not json"])

    run_pipeline(spark, config, emit=lambda line: None, listeners=[listener])

    (report,) = listener.reports
    assert (report.batch_id, report.rows_read, report.written, report.quarantined) == (0, 3, 2, 1)
    assert report.seconds > 0 and report.finished_at > 0 and not report.skipped
    assert [(summary.batches, summary.written, summary.quarantined) for summary in listener.summaries] == [(1, 2, 1)]


def test_the_console_line_and_the_summary_line_are_formatted_from_the_reports(spark, tmp_path):
    lines = []
    config = files_pipeline(tmp_path, [*GOOD, "not json"])

    run_pipeline(spark, config, emit=lines.append)

    assert lines[0].startswith("batch 0: 3 rows in ") and lines[0].endswith(": 2 written, 1 quarantined")
    assert lines[-1].startswith("done: 2 rows written, 1 quarantined in ")


def test_a_transforms_counts_are_in_its_batch_report(spark, tmp_path):
    listener = Collected()
    expectation = {"name": "expect", "options": {"name": "small", "condition": "value < 15", "on_violation": "drop"}}
    config = files_pipeline(tmp_path, GOOD, transforms=["add_processed_value", expectation])

    run_pipeline(spark, config, emit=lambda line: None, listeners=[listener])

    assert listener.reports[0].metrics == {"expectation 'small' (drop) violations": 1}
    assert listener.reports[0].written == 1


def test_the_metrics_file_has_one_json_object_per_batch_then_the_summary(spark, tmp_path):
    path = tmp_path / "metrics" / "run.jsonl"
    listener = JsonLinesListener(str(path))
    config = files_pipeline(tmp_path, [*GOOD, "not json"])

    run_pipeline(spark, config, emit=lambda line: None, listeners=[listener])
    listener.close()

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["type"] for record in records] == ["batch", "summary"]
    assert {key: records[0][key] for key in ("batch_id", "rows_read", "written", "quarantined")} == {
        "batch_id": 0, "rows_read": 3, "written": 2, "quarantined": 1,
    }
    assert (records[1]["written"], records[1]["quarantined"], records[1]["batches"]) == (2, 1, 1)


def test_a_restart_without_new_files_reports_no_batch(spark, tmp_path):
    config = files_pipeline(tmp_path, GOOD)
    run_pipeline(spark, config, emit=lambda line: None)
    listener = Collected()

    summary = run_pipeline(spark, config, emit=lambda line: None, listeners=[listener])

    assert (listener.reports, summary.written) == ([], 0)


@pytest.mark.parametrize("trigger", ["once", "available-now"])
def test_a_finite_trigger_ends_the_run_by_itself(spark, tmp_path, trigger):
    config = files_pipeline(tmp_path, GOOD, trigger=trigger)

    assert run_pipeline(spark, config, emit=lambda line: None).written == 2


MIXED = [*GOOD, "not json", '{"id": 4, "value": "ten", "timestamp": 1715181604.0}', GOOD[0]]


def published_lines(folder):
    return sorted(line for path in folder.glob("batch-*") for line in path.read_text().splitlines())


@pytest.fixture
def one_passes(monkeypatch):
    """The batches staged in one pass for the output and the quarantine, by id."""
    import pipeline_lib.run as run_module

    staged = []
    real = run_module.stage_in_one_pass

    def counting(rows, lines, batch_id):
        staged.append(batch_id)
        real(rows, lines, batch_id)

    monkeypatch.setattr(run_module, "stage_in_one_pass", counting)
    return staged


def test_a_batch_with_rejected_rows_is_staged_for_both_sinks_in_one_pass(spark, tmp_path, one_passes):
    summary = run_pipeline(spark, files_pipeline(tmp_path, MIXED), emit=lambda line: None)

    assert one_passes == [0]
    assert (summary.written, summary.quarantined) == (3, 2)


def test_one_pass_writes_the_same_output_and_quarantine_as_a_write_of_each(spark, tmp_path, monkeypatch, one_passes):
    from pipeline_lib.run import BatchWriter

    (tmp_path / "one").mkdir(), (tmp_path / "each").mkdir()
    run_pipeline(spark, files_pipeline(tmp_path / "one", MIXED), emit=lambda line: None)
    monkeypatch.setattr(BatchWriter, "_write_in_one_pass", lambda self, parsed, pending, batch_id: None)
    run_pipeline(spark, files_pipeline(tmp_path / "each", MIXED), emit=lambda line: None)

    assert one_passes == [0]
    for sink in ("output", "quarantine"):
        one, each = (published_lines(tmp_path / side / sink) for side in ("one", "each"))
        assert [line.replace("/one/", "/each/") for line in one] == each
        assert len(one) >= 2


def test_a_step_that_checks_rows_leaves_each_sink_its_own_write(spark, tmp_path, one_passes):
    steps = ["add_processed_value", {"name": "expect", "options": {"name": "positive", "condition": "value > 0"}}]
    summary = run_pipeline(spark, files_pipeline(tmp_path, MIXED, transforms=steps), emit=lambda line: None)

    assert one_passes == []
    assert (summary.written, summary.quarantined) == (3, 2)


def test_a_step_not_declared_row_wise_leaves_each_sink_its_own_write(spark, tmp_path, one_passes):
    from pipeline_lib.transforms import keeps_rows, register_transform

    @register_transform("unit_kept_rows")
    def kept_rows():
        return keeps_rows(lambda df: df)

    steps = ["add_processed_value", "unit_kept_rows"]
    summary = run_pipeline(spark, files_pipeline(tmp_path, MIXED, transforms=steps), emit=lambda line: None)

    assert one_passes == []
    assert (summary.written, summary.quarantined) == (3, 2)


def test_a_rejected_row_goes_through_the_steps_of_a_one_pass_write_with_its_fields_null(spark, tmp_path, one_passes):
    from pyspark.sql import functions as F

    from pipeline_lib.steps import Step
    from pipeline_lib.transforms import register_transform

    # Record 4's value did not parse; its id did, and must not reach a step.
    @register_transform("unit_refuses_id_4")
    def refuses_id_4():
        return Step(lambda df: df.withColumn("seen", F.when(F.col("id") == 4, F.raise_error(F.lit("id 4 seen")))),
                    keeps_rows=True, row_wise=True)

    steps = ["add_processed_value", "unit_refuses_id_4"]
    # "seen" is written, or Spark would leave the step's column, and its check, out.
    config = files_pipeline(tmp_path, MIXED, transforms=steps, **{"output.columns": "id,value,timestamp,processed_value,seen"})
    summary = run_pipeline(spark, config, emit=lambda line: None)

    assert one_passes == [0]
    assert (summary.written, summary.quarantined) == (3, 2)


@pytest.mark.parametrize(("quarantine", "writes_of_their_own"), [("a/quarantine", 0), ("b/quarantine", 2)])
def test_sinks_on_a_file_system_of_hadoops_own_write_each_record_once(
    spark, tmp_path, monkeypatch, viewfs, one_passes, quarantine, writes_of_their_own
):
    # Two viewfs mount points refuse the one pass's moves: each sink then gets its own write.
    from pipeline_lib.sinks.files import FileSink

    real, writes = FileSink.write, []
    monkeypatch.setattr(FileSink, "write", lambda self, rows, batch_id: writes.append(batch_id) or real(self, rows, batch_id))
    output = "a/output"
    config = files_pipeline(tmp_path, MIXED, **{"output.path": viewfs(output), "quarantine.path": viewfs(quarantine)})

    summary = run_pipeline(spark, config, emit=lambda line: None)
    again = run_pipeline(spark, config, emit=lambda line: None)

    assert (one_passes, len(writes)) == ([0], writes_of_their_own)
    assert ((summary.written, summary.quarantined), again.batches) == ((3, 2), 0)
    written = published_lines(tmp_path / output)
    assert (len(written), written.count("id,value,timestamp,processed_value")) == (4, 1)
    assert len(published_lines(tmp_path / quarantine)) == 2
    assert list((tmp_path / output).glob("_staging/*")) == []
    assert (tmp_path / output / "_batches" / "0").exists()


@pytest.mark.parametrize(("lines", "failing_move"), [(MIXED, 1), (MIXED, 2), (GOOD, 1)])
def test_a_staged_file_that_cannot_be_moved_leaves_each_sink_its_own_write(
    spark, tmp_path, monkeypatch, one_passes, lines, failing_move
):
    from pipeline_lib.sinks.folders import Folder, RenameError

    real, moves = Folder.move, []

    def failing(self, source, folder, target):
        moves.append(target)
        if len(moves) == failing_move:
            raise RenameError(f"could not rename {source}")
        real(self, source, folder, target)

    monkeypatch.setattr(Folder, "move", failing)
    (tmp_path / "moved").mkdir(), (tmp_path / "each").mkdir()
    summaries = [run_pipeline(spark, files_pipeline(tmp_path / "moved", lines), emit=lambda line: None)]
    monkeypatch.setattr(Folder, "move", real)
    summaries.append(run_pipeline(spark, files_pipeline(tmp_path / "each", lines), emit=lambda line: None))

    assert (one_passes, len(moves)) == ([0, 0], failing_move)
    assert len({(summary.written, summary.quarantined) for summary in summaries}) == 1
    for sink in ("output", "quarantine"):
        moved, each = (published_lines(tmp_path / side / sink) for side in ("moved", "each"))
        assert [line.replace("/moved/", "/each/") for line in moved] == each
        assert list((tmp_path / "moved" / sink).glob("_staging/*")) == []


def test_a_step_that_names_a_column_the_rows_lack_fails_the_run_as_the_querys_error(spark, tmp_path):
    # The plan checks steps on the schema only in some cases; otherwise the first batch's
    # write meets the bad setting, and the run fails with the query's error, one line for the CLI.
    steps = [{"name": "add_processed_value", "options": {"source": "amount"}}]
    config = files_pipeline(tmp_path, MIXED, transforms=steps)

    with pytest.raises(PySparkException, match="amount"):
        run_pipeline(spark, config, emit=lambda line: None)


@pytest.mark.parametrize(("output_format", "staged"), [("json", [0]), ("csv", [])])
def test_a_record_field_with_a_dot_in_its_name_is_written_as_one_field(
    spark, tmp_path, one_passes, output_format, staged
):
    lines = [json.dumps({"id": 1, "value": 10, "price.eur": 1.5}), "not json"]
    config = files_pipeline(
        tmp_path, lines, schema="id long, value int, `price.eur` double", **{"output.format": output_format}
    )

    summary = run_pipeline(spark, config, emit=lambda line: None)

    assert one_passes == staged  # a CSV header would need the name quoted: its own writer does that
    assert (summary.written, summary.quarantined) == (1, 1)
    written = spark.read.format(output_format).options(header=True, inferSchema=True).load(str(tmp_path / "output"))
    assert [row["price.eur"] for row in written.collect()] == [1.5]


def test_an_expectation_on_a_record_field_with_a_dot_in_its_name_quarantines_the_record(spark, tmp_path):
    lines = [json.dumps({"id": i, "value": 10, "price.eur": price}) for i, price in ((1, 1.5), (2, 3.0))]
    steps = [{"name": "expect", "options": {"name": "cheap", "condition": "`price.eur` < 2", "on_violation": "quarantine"}}]
    config = files_pipeline(tmp_path, lines, schema="id long, value int, `price.eur` double", transforms=steps)

    summary = run_pipeline(spark, config, emit=lambda line: None)

    assert (summary.written, summary.quarantined) == (1, 1)
    quarantined = spark.read.json(str(tmp_path / "quarantine"))
    assert [json.loads(row.payload)["price.eur"] for row in quarantined.collect()] == [3.0]
