"""A record schema of the user's own: the configuration's pure check, Spark's parse in the plan,
the parse of such records, and the transforms on the user's columns."""

import datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality

from pipeline_lib.cli import stream_main
from pipeline_lib.errors import ConfigError
from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.plan import make_plan
from pipeline_lib.schema import PROCESSED_COLUMNS, record_schema
from pipeline_lib.transforms import (
    add_processed_value,
    parse_json,
    quarantined_records,
    valid_records,
    with_event_date,
    with_event_time,
)

ORDERS_DDL = "order_id long, amount decimal(10,2), currency string, ts timestamp"


def parse_orders(spark, payloads, required=("order_id", "amount")):
    raw = spark.createDataFrame([(payload,) for payload in payloads], "value string")
    return raw.transform(parse_json(record_schema(ORDERS_DDL), required=required))


def reasons(parsed):
    return [row.reason for row in parsed.transform(quarantined_records(record_schema(ORDERS_DDL))).collect()]


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"schema": "order_id lng"}, "schema", "field 'order_id': unknown type 'lng'"),
        ({"schema": "order_id long,"}, "schema", "an empty field"),
        ({"schema": "order_id long, amount decimal(10,2"}, "schema", "left open"),
        ({"schema": "id long, ID string"}, "schema", "field 'ID' comes twice"),
        ({"schema": "_error string"}, "schema", "the parse stage uses"),
        ({"schema": ORDERS_DDL, "required": ["order_id", "total"]}, "required", "fields ['total'] are not in the schema"),
        ({"required": ["id", "total"]}, "required", "its fields: id, value, timestamp"),
    ],
)
def test_a_bad_schema_or_required_field_is_a_config_error_naming_it(overrides, field, message):
    with pytest.raises(ConfigError) as raised:
        load_pipeline_config(overrides=overrides, environ={})

    assert raised.value.field == field
    assert message in str(raised.value)


def test_a_users_schema_requires_no_field_unless_told():
    config = load_pipeline_config(overrides={"schema": ORDERS_DDL}, environ={})

    assert (config.schema, config.required) == (ORDERS_DDL, ())


def test_without_a_schema_the_seeds_fields_columns_and_required_fields_stay():
    config = load_pipeline_config(environ={})

    assert (config.schema, config.required, config.output.options.columns) == (None, ("id", "value"), PROCESSED_COLUMNS)


def test_the_command_line_names_a_bad_schema_before_any_work(capsys):
    assert stream_main(["--schema", "order_id lng"]) == 2

    assert capsys.readouterr().err == "error: --schema: field 'order_id': unknown type 'lng'\n"


def test_a_schema_spark_refuses_is_a_config_error_naming_schema_in_the_plan(spark, tmp_path):
    config = load_pipeline_config(
        overrides={"schema": "order_id long, amount decimal(40,2)", "checkpoint": str(tmp_path / "checkpoint")},
        environ={},
    )

    with pytest.raises(ConfigError, match=r"^schema: .*precision 40 exceeds max precision 38"):
        make_plan(config, spark)


def test_a_schema_field_named_like_a_source_column_is_named_in_the_plan(spark, tmp_path):
    config = load_pipeline_config(
        overrides={"schema": "order_id long, offset long", "checkpoint": str(tmp_path / "checkpoint")}, environ={}
    )

    with pytest.raises(ConfigError, match=r"^schema: input columns \['offset'\] would be replaced"):
        make_plan(config, spark)


def test_records_of_a_users_schema_are_parsed_into_its_typed_columns(spark):
    parsed = parse_orders(spark, ['{"order_id": 1, "amount": 12.34, "currency": "EUR", "ts": "2024-05-08T15:20:00.123Z"}'])

    expected = spark.createDataFrame(
        [(1, Decimal("12.34"), "EUR", datetime.datetime(2024, 5, 8, 15, 20, 0, 123000))],
        "order_id long, amount decimal(10,2), currency string, ts timestamp",
    )
    assert_df_equality(parsed.transform(valid_records()), expected, ignore_nullable=True)


@pytest.mark.parametrize(
    "ts, expected",
    [
        ('"2024-05-08T15:20:00.123Z"', datetime.datetime(2024, 5, 8, 15, 20, 0, 123000)),
        ('"2024-05-08T17:20:00+02:00"', datetime.datetime(2024, 5, 8, 15, 20)),
        ('"2024-05-08 15:20:00"', datetime.datetime(2024, 5, 8, 15, 20)),
        ('"2024-05-08"', datetime.datetime(2024, 5, 8)),
        ("1715181600", datetime.datetime(2024, 5, 8, 15, 20)),
        ("1715181600.5", datetime.datetime(2024, 5, 8, 15, 20, 0, 500000)),
    ],
)
def test_a_timestamp_field_takes_iso_8601_text_and_epoch_seconds(spark, ts, expected):
    parsed = parse_orders(spark, [f'{{"order_id": 1, "amount": 1, "ts": {ts}}}'])

    assert [row.ts for row in parsed.transform(valid_records()).collect()] == [expected]


@pytest.mark.parametrize("ts", ['"yesterday"', '"1715181600"', "99999999999999999", '"NaN"', "true", '"2024-13-01T00:00:00"'])
def test_a_timestamp_that_is_neither_is_quarantined_naming_the_field(spark, ts):
    parsed = parse_orders(spark, [f'{{"order_id": 1, "amount": 1, "ts": {ts}}}'])

    assert reasons(parsed) == ["field 'ts' is not a valid timestamp"]


def test_the_reasons_name_the_users_fields(spark):
    parsed = parse_orders(
        spark,
        [
            '{"amount": 1}',
            '{"order_id": 1, "amount": null}',
            '{"order_id": "x", "amount": 1}',
            '{"order_id": 1, "amount": 12.345}',
            '{"order_id": 1, "amount": 123456789.5}',
            '{"order_id": 9223372036854775808, "amount": 1}',
        ],
    )

    assert reasons(parsed) == [
        "missing required field 'order_id'",
        "field 'amount' is null",
        "field 'order_id' is not a valid bigint",
        "field 'amount' is not a valid decimal(10,2)",
        "field 'amount' is not a valid decimal(10,2)",
        "field 'order_id' is not a valid bigint",
    ]


def test_with_event_time_takes_iso_text_epoch_seconds_and_a_timestamp(spark):
    rows = spark.createDataFrame(
        [("2024-05-08T15:20:00.123Z", 1715181600.123, datetime.datetime(2024, 5, 8, 15, 20, 0, 123000))],
        "text string, seconds double, moment timestamp",
    )

    result = rows.transform(with_event_time("text", "a")).transform(with_event_time("seconds", "b"))
    result = result.transform(with_event_time("moment", "c"))

    assert {value for value in result.select("a", "b", "c").first()} == {datetime.datetime(2024, 5, 8, 15, 20, 0, 123000)}


def test_with_event_time_gives_null_for_text_that_is_no_time(spark):
    rows = spark.createDataFrame([("yesterday",), ("1715181600",)], "text string")

    assert [row.event_time for row in rows.transform(with_event_time("text")).collect()] == [
        None,
        datetime.datetime(2024, 5, 8, 15, 20),
    ]


def test_with_event_date_gives_the_day_or_the_hour_of_the_event_time(spark):
    rows = spark.createDataFrame([(datetime.datetime(2024, 5, 8, 15, 20),)], "event_time timestamp")

    result = rows.transform(with_event_date()).transform(with_event_date(target="hour", unit="hour"))

    expected = spark.createDataFrame(
        [(datetime.datetime(2024, 5, 8, 15, 20), "2024-05-08", "2024-05-08T15")],
        "event_time timestamp, date string, hour string",
    )
    assert_df_equality(result, expected, ignore_nullable=True)


def test_with_event_date_refuses_an_unknown_unit():
    with pytest.raises(ValueError, match="unit 'week' is not one of day, hour"):
        with_event_date(unit="week")


def test_add_processed_value_keeps_a_decimal_exact(spark):
    rows = spark.createDataFrame([(Decimal("12.34"),)], "amount decimal(10,2)")

    result = rows.transform(add_processed_value(source="amount", target="amount_cents", factor=100))

    assert result.first().amount_cents == Decimal("1234.00")


def test_add_processed_value_names_a_column_the_rows_lack(spark):
    rows = spark.createDataFrame([(1,)], "order_id long")

    with pytest.raises(ValueError, match=r"column 'amount': \[UNRESOLVED_COLUMN"):
        rows.transform(add_processed_value(source="amount"))
