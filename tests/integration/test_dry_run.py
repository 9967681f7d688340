"""``jobs/stream.py --dry-run`` prints the plan and writes nothing; ``--metrics-file`` gets a
JSON object per batch; the Kafka offsets each batch covered are in its report."""

import json

from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.reports import BatchReport, Listener
from pipeline_lib.run import run_pipeline
from tests.helpers import stream_in_process
from tests.integration.test_pipeline import produce


def folders(tmp_path):
    return [
        "--output", str(tmp_path / "output"), "--checkpoint", str(tmp_path / "checkpoint"),
        "--quarantine", str(tmp_path / "quarantine"),
    ]


def test_dry_run_prints_the_plan_and_writes_nothing(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 3)

    result = stream_in_process("--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path), "--dry-run")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"  source: topic {topic} (starting_offsets=earliest" in "\n".join(lines)
    assert "    1. add_processed_value()  [keeps rows]" in lines
    assert f"  output: csv to {tmp_path / 'output'} (columns id, value, timestamp, processed_value)" in lines
    assert f"  checkpoint: {tmp_path / 'checkpoint'} (new)" in lines
    assert "  trigger: available-now; one query" in lines
    assert list(tmp_path.iterdir()) == []


def test_dry_run_after_a_run_says_the_checkpoint_goes_on_with_these_sinks(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 3)
    first = stream_in_process("--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path))
    assert first.returncode == 0, first.stderr[-2000:]

    result = stream_in_process("--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path), "--dry-run")

    assert f"  checkpoint: {tmp_path / 'checkpoint'} (resumed, bound to output, quarantine)" in result.stdout.splitlines()


def test_dry_run_of_a_missing_topic_is_one_line_and_exit_2(spark, bootstrap, topic, tmp_path):
    result = stream_in_process("--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path), "--dry-run")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: TopicNotFoundError: topic {topic!r} does not exist on {bootstrap}; jobs/produce.py creates it, or check --topic"
    ]
    assert list(tmp_path.iterdir()) == []


def test_dry_run_of_a_bad_setting_names_the_flag_and_exits_2(spark, bootstrap, topic, tmp_path):
    result = stream_in_process("--bootstrap-servers", bootstrap, "--trigger", "sometimes", "--dry-run")

    assert result.returncode == 2
    assert result.stderr.startswith("error: --trigger: unknown trigger 'sometimes'")


def test_metrics_file_gets_a_json_object_per_batch_and_the_summary(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 30, partitions=2)
    metrics = tmp_path / "metrics.jsonl"
    args = ["--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path), "--max-offsets-per-trigger", "10"]

    result = stream_in_process(*args, "--metrics-file", str(metrics))

    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    batches, summary = records[:-1], records[-1]
    assert [record["type"] for record in batches] == ["batch"] * len(batches) and summary["type"] == "summary"
    assert len(batches) >= 3 and sum(record["written"] for record in batches) == summary["written"] == 30
    assert [record["batch_id"] for record in batches] == list(range(len(batches)))


class Collected(Listener):
    def __init__(self):
        self.reports = []

    def on_batch(self, report: BatchReport) -> None:
        self.reports.append(report)


def test_each_batch_report_names_the_kafka_offsets_it_covered(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 40, partitions=2)
    config = load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic, "output.path": str(tmp_path / "output"),
            "quarantine.path": str(tmp_path / "quarantine"), "checkpoint": str(tmp_path / "checkpoint"),
            "source.max_offsets_per_trigger": 10,
        },
        environ={},
    )
    listener = Collected()

    run_pipeline(spark, config, emit=lambda line: None, listeners=[listener])

    covered = {}
    for report in listener.reports:
        for offsets in report.offsets:
            assert offsets.topic == topic
            covered.setdefault(offsets.partition, []).append((offsets.start, offsets.end))
    for partition, ranges in covered.items():
        ends = [end for _, end in ranges]
        assert ends == sorted(ends) and all(start == end for (_, end), (start, _) in zip(ranges, ranges[1:]))
    assert sum(end for ends in covered.values() for _, end in ends[-1:]) == 40
    assert sum(report.rows_read for report in listener.reports) == 40
    assert listener.reports[-1].offsets_behind_latest == 0


def test_show_prints_the_rows_as_the_csv_holds_them(spark, bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 5)

    result = stream_in_process("--bootstrap-servers", bootstrap, "--topic", topic, *folders(tmp_path), "--show", "5")

    assert result.returncode == 0, result.stderr[-2000:]
    held = "".join(path.read_text() for path in sorted((tmp_path / "output").glob("batch-*.csv")))
    stamps = [line.split(",")[2] for line in held.splitlines() if not line.startswith("id,")]
    shown = [line for line in result.stdout.splitlines() if line.startswith("|") and "timestamp" not in line]
    assert len(shown) == 5 and all(any(f"|{stamp}" in line for line in shown) for stamp in stamps)
    assert "E9" not in result.stdout
