"""parse_json: typed columns for good payloads, a reason for every bad one, no row lost."""

import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

from pipeline_lib.schema import RECORD_SCHEMA
from pipeline_lib.transforms import (
    ERROR_COLUMN,
    parse_json,
    quarantined_records,
    split_valid,
    valid_records,
)

KAFKA_INPUT = StructType(
    [
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
    ]
)


def kafka_rows(spark, *payloads):
    rows = [(payload, "input-data", 0, offset) for offset, payload in enumerate(payloads)]
    return spark.createDataFrame(rows, KAFKA_INPUT)


def reason_of(spark, payload, **options):
    return kafka_rows(spark, payload).transform(parse_json(**options)).first()[ERROR_COLUMN]


def test_good_record_becomes_typed_columns_and_keeps_kafka_coordinates(spark):
    df = kafka_rows(spark, b'{"id": 1, "value": 75, "timestamp": 1715181600.123}')

    result = df.transform(parse_json()).transform(valid_records())

    expected = spark.createDataFrame(
        [(1, 75, 1715181600.123, "input-data", 0, 0)],
        "id long, value int, timestamp double, topic string, partition int, offset long",
    )
    assert_df_equality(result, expected, ignore_nullable=True)


def test_string_payload_column_parses_like_binary(spark):
    df = spark.createDataFrame([('{"id": 2, "value": 5}',)], "value string")

    result = df.transform(parse_json()).transform(valid_records())

    expected = spark.createDataFrame([(2, 5, None)], "id long, value int, timestamp double")
    assert_df_equality(result, expected, ignore_nullable=True)


def test_output_schema_is_record_fields_then_lineage_then_markers(spark):
    result = kafka_rows(spark, b"{}").transform(parse_json())

    assert result.columns == [
        "id", "value", "timestamp", "topic", "partition", "offset", "_error", "_payload", "_payload_base64",
    ]
    assert [result.schema[name].dataType for name in ("id", "value", "timestamp")] == [
        LongType(), IntegerType(), DoubleType(),
    ]


def test_unknown_fields_are_accepted_and_ignored(spark):
    payload = b'{"id": 3, "value": 7, "timestamp": 1.5, "colour": "red", "nested": {"a": [1]}}'

    assert reason_of(spark, payload) is None
    assert kafka_rows(spark, payload).transform(parse_json()).columns[:3] == ["id", "value", "timestamp"]


def test_missing_timestamp_is_accepted_as_null(spark):
    row = kafka_rows(spark, b'{"id": 4, "value": 8}').transform(parse_json()).first()

    assert (row[ERROR_COLUMN], row["timestamp"]) == (None, None)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json at all", "invalid JSON"),
        (b'{"id": 1, "value": 7', "invalid JSON"),
        (b"", "payload is empty"),
        (b"   ", "payload is empty"),
        (None, "payload is null"),
        (b'[{"id": 1, "value": 7}]', "expected a JSON object, got an array"),
        (b"42", "expected a JSON object, got a scalar"),
        (b'"text"', "expected a JSON object, got a scalar"),
        (b'{"value": 7}', "missing required field 'id'"),
        (b'{"id": 1}', "missing required field 'value'"),
        (b'{"id": 1, "value": null}', "field 'value' is null"),
        (b'{"id": null, "value": 1}', "field 'id' is null"),
        (b'{"id": 1, "value": "75"}', "field 'value' is not a valid int"),
        (b'{"id": 1, "value": 75.5}', "field 'value' is not a valid int"),
        (b'{"id": 1, "value": 3000000000}', "field 'value' is not a valid int"),
        (b'{"id": "x", "value": 1}', "field 'id' is not a valid bigint"),
        (b'{"id": 99999999999999999999, "value": 1}', "field 'id' is not a valid bigint"),
        (b'{"id": 1, "value": 1, "timestamp": "yesterday"}', "field 'timestamp' is not a valid double"),
        (b'\xff\xfe{"id": 1, "value": 2}', "payload is not valid UTF-8"),
    ],
    ids=lambda case: repr(case)[:40],
)
def test_malformed_payload_is_marked_with_its_reason(spark, payload, reason):
    assert reason_of(spark, payload) == reason


def test_payload_over_the_size_limit_is_marked(spark):
    payload = b'{"id": 1, "value": 2, "pad": "' + b"x" * 100 + b'"}'

    assert reason_of(spark, payload, max_bytes=64) == "payload exceeds 64 bytes"
    assert reason_of(spark, payload, max_bytes=None) is None


def test_no_row_is_lost_between_valid_and_quarantined(spark):
    payloads = [b'{"id": 1, "value": 1}', b"{", None, b'{"id": 2, "value": 2}', b'{"id": 3}']
    df = kafka_rows(spark, *payloads).transform(parse_json())

    good, bad = split_valid(df)

    assert (good.count(), bad.count()) == (2, 3)
    assert sorted(good.select("offset").union(bad.select("offset")).toPandas()["offset"]) == [0, 1, 2, 3, 4]


def test_quarantined_rows_keep_raw_payload_coordinates_and_reason(spark):
    df = kafka_rows(spark, b'{"id": 1, "value": 1}', b'{"id": 1, "value": "75"}')

    result = df.transform(parse_json()).transform(quarantined_records())

    expected = spark.createDataFrame(
        [('{"id": 1, "value": "75"}', None, "input-data", 0, 1, "field 'value' is not a valid int")],
        "payload string, payload_base64 string, topic string, partition int, offset long, reason string",
    )
    assert_df_equality(result, expected, ignore_nullable=True)


def test_non_utf8_payload_keeps_its_exact_bytes_in_base64(spark):
    row = kafka_rows(spark, b"\xff\x00ab").transform(parse_json()).transform(quarantined_records()).first()

    assert row["payload_base64"] == "/wBhYg=="
    assert row["payload"].encode("utf-8")  # readable text, invalid bytes replaced


def test_good_and_bad_rows_are_told_apart_column_wise(spark):
    df = kafka_rows(spark, b'{"id": 1, "value": 1}', b"oops").transform(parse_json())

    checked = df.select(
        F.col(ERROR_COLUMN).isNull().alias("accepted"),
        F.col("offset").isin(0).alias("expected"),
    )

    assert_column_equality(checked, "accepted", "expected")


def test_required_fields_must_be_in_the_schema():
    with pytest.raises(ValueError, match="not in the schema"):
        parse_json(required=["id", "colour"])


def test_custom_schema_and_column(spark):
    schema = StructType([StructField("name", StringType())])
    df = spark.createDataFrame([('{"name": "a"}', 1)], "body string, n int")

    result = df.transform(parse_json(schema=schema, column="body", required=["name"])).transform(valid_records())

    assert_df_equality(result, spark.createDataFrame([("a", 1)], "name string, n int"), ignore_nullable=True)


def test_record_schema_is_id_value_timestamp():
    assert [(f.name, f.dataType) for f in RECORD_SCHEMA.fields] == [
        ("id", LongType()), ("value", IntegerType()), ("timestamp", DoubleType()),
    ]


def test_json_is_parsed_once_even_when_a_filter_on_the_error_follows(spark):
    df = spark.createDataFrame([('{"id": 1, "value": 2}',)], "value string")

    filtered = df.transform(parse_json()).where(F.col("_error").isNull())

    plan = filtered._jdf.queryExecution().optimizedPlan().toString()
    assert plan.count("from_json(") == 1, plan


def test_an_input_column_named_like_a_record_field_is_refused(spark):
    df = spark.createDataFrame([('{"id": 1, "value": 2}', 5.0)], "value string, timestamp double")

    with pytest.raises(ValueError, match=r"input columns \['timestamp'\] would be replaced by parse_json"):
        df.transform(parse_json())


def test_one_parse_serves_dataframes_of_different_columns_in_turn(spark):
    parse = parse_json()
    kafka = kafka_rows(spark, b'{"id": 1, "value": 75}', b'{"id": 2}')
    text = spark.createDataFrame([('{"id": 3, "value": 5}', "a")], "value string, note string")

    first = kafka.transform(parse).select("id", "offset", ERROR_COLUMN)
    second = text.transform(parse).select("id", "note", ERROR_COLUMN)
    third = kafka.transform(parse).select("id", "offset", ERROR_COLUMN)

    assert_df_equality(first, third)
    assert_df_equality(
        second, spark.createDataFrame([(3, "a", None)], "id long, note string, _error string"), ignore_nullable=True
    )
    assert [row[ERROR_COLUMN] for row in first.collect()] == [None, "missing required field 'value'"]
