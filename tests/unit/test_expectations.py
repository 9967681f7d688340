"""Expectations, the windowed aggregate and the sinks' settings, on small static DataFrames."""

import pytest
from chispa import assert_df_equality

from pipeline_lib.config import ConfigError
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.pipeline import TransformSpec, load_pipeline_config
from pipeline_lib.plan import make_plan
from pipeline_lib.reports import RunSummary
from pipeline_lib.sinks import build_sink
from pipeline_lib.transforms import (
    expect,
    get_transform,
    quarantined_records,
    select_columns,
    valid_records,
    window_stats,
    with_event_time,
)

ROWS = "id long, value int, topic string, partition int, offset long"


@pytest.fixture
def rows(spark):
    return spark.createDataFrame([(1, 5, "t", 0, 10), (2, 150, "t", 0, 11), (3, None, "t", 0, 12)], ROWS)


def violations(df, transform):
    (counted,) = df.select(*transform.metrics(df).values()).collect()
    return counted[0]



def planned(folder, **overrides):
    """The plan of a pipeline reading the files of ``folder`` (no broker needed), with ``overrides``."""
    config = load_pipeline_config(overrides={"source.type": "files", "source.path": str(folder), **overrides}, environ={})
    return make_plan(config)

def test_warn_keeps_every_row_and_counts_the_violations_null_included(rows):
    check = expect("small", "value < 100")

    assert_df_equality(rows.transform(check), rows)
    assert violations(rows, check) == 2 and check.keeps_rows


def test_drop_leaves_the_violations_out(spark, rows):
    check = expect("small", "value < 100", "drop")

    assert [row["id"] for row in rows.transform(check).collect()] == [1]
    assert not getattr(check, "keeps_rows", False)


def test_quarantine_marks_rows_for_the_quarantine_with_the_reason(rows):
    marked = rows.transform(expect("small", "value < 100", "quarantine"))

    assert [row["id"] for row in marked.transform(valid_records()).collect()] == [1]
    rejected = marked.transform(quarantined_records()).collect()
    assert [(row["offset"], row["payload"], row["reason"]) for row in rejected] == [
        (11, '{"id":2,"value":150}', "expectation 'small' failed"),
        (12, '{"id":3}', "expectation 'small' failed"),
    ]


def test_a_row_rejected_earlier_keeps_its_first_reason_and_is_not_counted_again(rows):
    first = expect("small", "value < 100", "quarantine")
    second = expect("odd", "id % 2 = 1", "drop")
    marked = rows.transform(first)

    both = marked.transform(second).transform(select_columns(["id"]))

    assert violations(marked, second) == 0
    assert [(row["id"], row["_error"]) for row in both.collect()] == [
        (1, None), (2, "expectation 'small' failed"), (3, "expectation 'small' failed"),
    ]


def test_fail_stops_with_the_expectation_and_where_the_row_came_from(rows):
    checked = rows.where("id < 3").transform(expect("small", "value < 100", "fail"))

    with pytest.raises(Exception, match=r"expectation 'small' failed at topic t, partition 0, offset 11: value < 100"):
        checked.collect()


@pytest.mark.parametrize(
    "condition, message",
    [
        ("value <", "is not valid: [PARSE_SYNTAX_ERROR]"),
        ("nope > 1", "`nope` cannot be resolved"),
        ("value + 1", "gives int, not true/false"),
    ],
)
def test_a_bad_condition_is_refused_naming_it(rows, condition, message):
    with pytest.raises(ValueError, match="expectation 'bad': condition") as error:
        rows.transform(expect("bad", condition))

    assert message in str(error.value) and repr(condition) in str(error.value)


def test_expect_is_built_by_name_with_its_own_name_option():
    check = get_transform("expect", name="positive", condition="value > 0", on_violation="drop")

    assert check.checked_on_schema


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="warn, drop, quarantine, fail"):
        expect("x", "value > 0", "ignore")


def test_a_bad_condition_in_the_configuration_is_a_config_error_naming_the_transform(spark, tmp_path):
    transforms = ["add_processed_value", {"name": "expect", "options": {"name": "bad", "condition": "processed > 1"}}]

    with pytest.raises(ConfigError, match=r"^transforms\[1\]: expectation 'bad': condition 'processed > 1' is not valid"):
        planned(tmp_path, transforms=transforms, checkpoint=str(tmp_path / "c"))


def test_a_condition_may_name_a_column_an_earlier_transform_adds(spark, tmp_path):
    transforms = ["add_processed_value", {"name": "expect", "options": {"name": "even", "condition": "processed_value % 2 = 0"}}]

    plan = planned(tmp_path, transforms=transforms)

    assert plan.config.transforms[1] == TransformSpec("expect", {"name": "even", "condition": "processed_value % 2 = 0"})
    assert [step.describe() for step in plan.steps][1] == "expect(name='even', condition='processed_value % 2 = 0')"


def test_window_stats_counts_averages_and_maxes_per_window(spark):
    readings = spark.createDataFrame(
        [(1715181601.0, 10), (1715181609.9, 30), (1715181610.0, 7), (None, 99)], "timestamp double, value int"
    )

    stats = readings.transform(with_event_time()).transform(window_stats(window="10 seconds"))

    assert sorted((row["count"], row["avg_value"], row["max_value"]) for row in stats.collect()) == [(1, 7.0, 7), (2, 20.0, 30)]
    assert window_stats().stateful


QUARANTINING = {"name": "expect", "options": {"name": "small", "condition": "value < 100", "on_violation": "quarantine"}}
FEW = {"name": "expect", "options": {"name": "few", "condition": "count < 5", "on_violation": "quarantine"}}


@pytest.mark.parametrize(
    "transforms, position",
    [([QUARANTINING, "with_event_time", "window_stats"], 0), (["with_event_time", "window_stats", FEW], 2)],
    ids=["before the aggregate", "after the aggregate"],
)
def test_a_stateful_pipeline_refuses_quarantining_transforms(spark, tmp_path, transforms, position):
    with pytest.raises(ConfigError, match=rf"^transforms\[{position}\]: a pipeline with a stateful transform cannot quarantine rows"):
        planned(tmp_path, transforms=transforms, **{"output.columns": "window_start"})


def test_sink_defaults_apply_only_to_the_options_a_sink_has():
    defaults = {"format": "csv", "path": "output", "columns": ["id"]}

    memory = build_sink({"format": "memory", "name": "rows"}, "output", defaults)
    kafka = build_sink({"format": "kafka", "topic": "out"}, "output", defaults, KafkaSettings())

    assert (memory.describe(), memory.options.columns) == ("memory table rows", ("id",))
    assert (kafka.describe(), kafka.options.key) == ("kafka topic out", ("id",))


@pytest.mark.parametrize(
    "section, field",
    [({"format": "kafka"}, "output.topic"), ({"format": "kafka", "topic": "bad topic"}, "output.topic"), ({"format": "memory", "name": "a-b"}, "output.name")],
)
def test_sink_settings_are_checked(section, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        build_sink(section, "output", kafka=KafkaSettings())


def test_summary_adds_up_metrics_and_names_them():
    summary = RunSummary(written=3)
    summary.add_metrics({"expectation 'a' (warn) violations": 1})
    summary.add_metrics({"expectation 'a' (warn) violations": 2})

    assert summary.line() == "done: 3 rows written, 0 quarantined in 0.0s; expectation 'a' (warn) violations: 3"
