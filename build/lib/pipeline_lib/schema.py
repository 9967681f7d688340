"""The record schema, defined once for the producer, the parser and the tests."""

from pyspark.sql.types import DoubleType, IntegerType, LongType, StructField, StructType

RECORD_SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("value", IntegerType()),
        StructField("timestamp", DoubleType()),  # epoch seconds, fractional
    ]
)

REQUIRED_FIELDS = ("id", "value")

PROCESSED_COLUMNS = ("id", "value", "timestamp", "processed_value")
