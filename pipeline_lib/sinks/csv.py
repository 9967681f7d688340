"""The CSV sink: a header in every file, numbers as plain decimals (1715181600.123)."""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, StructField, StructType

from pipeline_lib.schema import column_named
from pipeline_lib.sinks.base import register_sink
from pipeline_lib.sinks.files import FileSink, FileSinkOptions, Line

# The fast path of plain_decimal: values with at most this many decimals.
_MICRO_DIGITS = 6
_MICRO_UNITS = 10**_MICRO_DIGITS


def plain_decimal(column: Column) -> Column:
    """A double as the shortest decimal text that reads back to it, never in E notation:
    1715181600.123 rather than Java's 1.715181600123E9. Values a decimal(38,18) cannot hold
    exactly (beyond 1e18, or with more than 18 decimals) keep Java's form, which any CSV reader
    still parses.

    >>> spark.createDataFrame([(1715181600.123,), (0.5,), (100.0,), (1.25e-11,), (3e20,)], "x double").select(
    ...     plain_decimal(F.col("x")).alias("x")).show()
    +----------------+
    |               x|
    +----------------+
    |  1715181600.123|
    |             0.5|
    |             100|
    |0.0000000000125|
    |          3.0E20|
    +----------------+
    """

    # Below 2**31 (epoch seconds until 2038), a double within half a unit of its last bit of
    # a value with at most six decimals is within 0.25 of that value's count of micro-units
    # once multiplied by a million: rounding finds the count, and only one such value reads back to
    # the double. Integer arithmetic then renders it, its trailing zeros counted rather than
    # trimmed from the text (Spark's rtrim of a character set copies the text once per character
    # it looks at: trimming took half of this path's time). From 1 to 10 million Java writes a
    # double without an exponent and with at most 16 decimals, the digits a decimal(38,18) would
    # hold: its text is kept, with no decimal made (about 0.6 microseconds a value less). Other
    # doubles go through Spark's decimal, which it makes from those digits (Double.toString), so
    # a decimal(38,18) holds them exactly. The text of these two loses its trailing zeros and a
    # bare point.
    def trimmed(text: Column) -> Column:
        return F.rtrim(F.rtrim(text, F.lit("0")), F.lit("."))

    micros = F.floor(column * F.lit(float(_MICRO_UNITS)) + F.lit(0.5))
    magnitude = F.abs(micros)
    fraction = magnitude % F.lit(_MICRO_UNITS)
    whole = ((magnitude - fraction) / F.lit(_MICRO_UNITS)).cast("long")
    kept = F.when(fraction == 0, F.lit(0))  # decimals: six less the fraction's trailing zeros
    for digits in range(1, _MICRO_DIGITS):
        kept = kept.when(fraction % F.lit(10 ** (_MICRO_DIGITS - digits)) == 0, F.lit(digits))
    decimals = F.substring(F.lpad(fraction.cast("string"), _MICRO_DIGITS, "0"), F.lit(1), kept.otherwise(_MICRO_DIGITS))
    sign = F.when(column < 0, F.lit("-")).otherwise(F.lit(""))
    point = F.when(fraction == 0, F.lit("")).otherwise(F.lit("."))
    from_micros = F.concat(sign, whole.cast("string"), point, decimals)
    in_micros = (F.abs(column) < F.lit(float(2**31))) & (micros / F.lit(float(_MICRO_UNITS)) == column)
    eighteen = column.cast("decimal(38,18)")
    in_range = F.abs(column) < F.lit(1e18)
    java_plain = (F.abs(column) >= F.lit(1.0)) & (F.abs(column) < F.lit(1e7))
    return (
        F.when(column == 0, F.lit("0"))
        .when(in_micros, from_micros)
        .when(java_plain, trimmed(column.cast("string")))
        .when(in_range & (eighteen.cast("double") == column), trimmed(eighteen.cast("string")))
        .otherwise(column.cast("string"))
    )


def with_plain_decimals(df: DataFrame) -> DataFrame:
    """``df`` with every double or float column as :func:`plain_decimal` text, as the CSV holds
    it (for the CSV itself, and for showing rows on a console).

    >>> spark.createDataFrame([(1, 1715181600.123)], "id long, t double").transform(with_plain_decimals).show()
    +---+--------------+
    | id|             t|
    +---+--------------+
    |  1|1715181600.123|
    +---+--------------+
    """
    return df.select(*_stored_fields(df.schema))


def _stored_fields(schema: StructType) -> List[Column]:
    """The fields of ``schema`` as the CSV holds them."""
    return _stored({field.name: column_named(field.name) for field in schema.fields}, schema)


def _stored(columns: Mapping[str, Column], schema: StructType) -> List[Column]:
    """The columns of ``schema`` as the CSV holds them: floating-point ones as plain decimals."""
    return [_as_stored(columns[field.name], field).alias(field.name) for field in schema.fields]


def _as_stored(column: Column, field: StructField) -> Column:
    return plain_decimal(column) if isinstance(field.dataType, (DoubleType, FloatType)) else column


# A header name Spark's writer leaves as it is (no quotes, nothing trimmed).
_PLAIN_NAME = re.compile(r"\w+")


@register_sink("csv")
class CsvSink(FileSink):
    writer_options = {"header": "true"}

    def __init__(self, options: FileSinkOptions):
        super().__init__(options)
        # The stored columns of each schema written, made once: making them takes a call to
        # the JVM for each function of each column, more than a small batch's write.
        self._stored_by_schema: Dict[str, List[Column]] = {}

    def prepare(self, df: DataFrame) -> DataFrame:
        schema = df.schema
        key = schema.json()
        if key not in self._stored_by_schema:
            self._stored_by_schema[key] = _stored_fields(schema)
        return df.select(*self._stored_by_schema[key])

    def line(self, columns: Mapping[str, Column], schema: StructType) -> Optional[Line]:
        # Spark's to_csv renders a row with the CSV writer's own generator and default options.
        if self.options.partition_by or not all(_PLAIN_NAME.fullmatch(name) for name in schema.names):
            return None
        return Line(F.to_csv(F.struct(*_stored(columns, schema))), ",".join(schema.names))

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.options(header="true", inferSchema="true").csv(self.location)
