"""add_processed_value, with_event_time, select_columns and the transform registry."""

import datetime

import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F

from pipeline_lib.transforms import (
    UnknownTransformError,
    add_processed_value,
    get_transform,
    known_transforms,
    register_transform,
    select_columns,
    with_event_time,
)


def test_processed_value_is_twice_the_value_by_default(spark):
    df = spark.createDataFrame([(75,), (0,), (-3,), (None,)], "value int")

    result = df.transform(add_processed_value())

    expected = spark.createDataFrame([(75, 150), (0, 0), (-3, -6), (None, None)], "value int, processed_value long")
    assert_df_equality(result, expected, ignore_nullable=True)


@pytest.mark.parametrize("factor", [0, 1, 3, -2, 10])
def test_processed_value_uses_the_given_factor(spark, factor):
    df = spark.createDataFrame([(v,) for v in range(5)], "value int").withColumn("expected", F.col("value").cast("long") * factor)

    result = df.transform(add_processed_value(factor))

    assert_column_equality(result, "processed_value", "expected")


def test_fractional_factor_gives_a_double(spark):
    df = spark.createDataFrame([(3,)], "value int")

    result = df.transform(add_processed_value(0.5))

    assert_df_equality(result, spark.createDataFrame([(3, 1.5)], "value int, processed_value double"), ignore_nullable=True)


def test_largest_int_does_not_overflow(spark):
    df = spark.createDataFrame([(2147483647,)], "value int")

    assert df.transform(add_processed_value()).first()["processed_value"] == 4294967294


def test_source_and_target_columns_are_options(spark):
    df = spark.createDataFrame([(4,)], "reading int")

    result = df.transform(add_processed_value(3, source="reading", target="tripled"))

    assert_df_equality(result, spark.createDataFrame([(4, 12)], "reading int, tripled long"), ignore_nullable=True)


def test_factor_must_be_a_number():
    with pytest.raises(TypeError, match="factor must be a number"):
        add_processed_value("2")


def test_event_time_is_a_timestamp_from_epoch_seconds(spark):
    df = spark.createDataFrame([(1715181600.123,), (None,)], "timestamp double")

    result = df.transform(with_event_time())

    expected = spark.createDataFrame(
        [(1715181600.123, datetime.datetime(2024, 5, 8, 15, 20, 0, 123000)), (None, None)],
        "timestamp double, event_time timestamp",
    )
    assert_df_equality(result, expected, ignore_nullable=True)


def test_event_time_out_of_range_is_null_not_a_failure(spark):
    df = spark.createDataFrame([(1e300,), (-1e300,)], "timestamp double")

    assert [row["event_time"] for row in df.transform(with_event_time()).collect()] == [None, None]


def test_event_time_can_be_windowed(spark):
    df = spark.createDataFrame([(0.5, 1), (59.0, 2), (61.0, 3)], "timestamp double, value int")

    result = (
        df.transform(with_event_time())
        .groupBy(F.window("event_time", "1 minute"))
        .agg(F.sum("value").alias("total"))
        .select(F.col("window.start").cast("long").alias("start"), "total")
    )

    assert_df_equality(result, spark.createDataFrame([(0, 3), (60, 3)], "start long, total long"), ignore_row_order=True, ignore_nullable=True)


def test_select_columns_keeps_the_given_order(spark):
    df = spark.createDataFrame([(1, 2, 3.0, 4, "t")], "id long, value int, timestamp double, processed_value long, topic string")

    assert df.transform(select_columns()).columns == ["id", "value", "timestamp", "processed_value"]


def test_select_columns_names_what_is_missing(spark):
    df = spark.createDataFrame([(1,)], "id long")

    with pytest.raises(ValueError, match=r"\['processed_value'\]"):
        df.transform(select_columns(["id", "processed_value"]))


def test_registry_builds_a_transform_by_name(spark):
    df = spark.createDataFrame([(5,)], "value int")

    result = df.transform(get_transform("add_processed_value", factor=3))

    assert result.first()["processed_value"] == 15


def test_registry_knows_the_library_transforms():
    assert {"parse_json", "add_processed_value", "with_event_time", "select_columns"} <= set(known_transforms())


def test_unknown_transform_lists_the_known_ones():
    with pytest.raises(UnknownTransformError, match="unknown transform 'double_it'; known: .*add_processed_value"):
        get_transform("double_it")


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(UnknownTransformError, match="has no option 'fator'; its options: factor, source, target"):
        get_transform("add_processed_value", fator=3)


def test_new_transforms_can_be_registered(spark):
    @register_transform("negate_value")
    def negate_value(column: str = "value"):
        return lambda df: df.withColumn(column, -F.col(column))

    result = spark.createDataFrame([(5,)], "value int").transform(get_transform("negate_value"))

    assert result.first()["value"] == -5


def test_a_name_cannot_be_taken_by_another_function():
    with pytest.raises(ValueError, match="already registered by pipeline_lib.transforms.add_processed_value"):
        register_transform("add_processed_value")(lambda: None)


def test_the_same_function_defined_again_replaces_itself(spark):
    def define(offset):
        @register_transform("shift_value")
        def shift_value():
            return lambda df: df.withColumn("value", F.col("value") + offset)

    define(1)
    define(5)

    assert spark.createDataFrame([(1,)], "value int").transform(get_transform("shift_value")).first()["value"] == 6
