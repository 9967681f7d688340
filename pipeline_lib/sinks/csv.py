"""The CSV sink: a header in every file, numbers as plain decimals (1715181600.123)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType

from pipeline_lib.sinks.base import register_sink
from pipeline_lib.sinks.files import FileSink


def plain_decimal(column: Column) -> Column:
    """A double as the shortest decimal text that reads back to it, never in E notation:
    1715181600.123 rather than Java's 1.715181600123E9. Values a decimal(38,18) cannot hold
    keep Java's form, which any CSV reader still parses.

    >>> spark.createDataFrame([(1715181600.123,), (0.5,), (100.0,)], "x double").select(
    ...     plain_decimal(F.col("x")).alias("x")).show()
    +--------------+
    |             x|
    +--------------+
    |1715181600.123|
    |           0.5|
    |           100|
    +--------------+
    """
    shortest = column.cast("string")  # Java's shortest round-trip digits, maybe in E notation
    exact = F.regexp_replace(shortest.try_cast("decimal(38,18)").cast("string"), r"(\.\d*?[1-9])0+$|\.0+$", "$1")
    representable = (F.abs(column) >= F.lit(1e-12)) & (F.abs(column) < F.lit(1e19))
    return F.when(column.isNull(), None).when((column == 0) | representable, exact).otherwise(shortest)


@register_sink("csv")
class CsvSink(FileSink):
    writer_options = {"header": "true"}

    def prepare(self, df: DataFrame) -> DataFrame:
        return df.select(
            *[
                plain_decimal(F.col(field.name)).alias(field.name)
                if isinstance(field.dataType, (DoubleType, FloatType))
                else F.col(field.name)
                for field in df.schema.fields
            ]
        )

    def read(self, spark):
        return spark.read.options(header="true", inferSchema="true").csv(self.location)
