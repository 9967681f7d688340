"""The rate source: synthetic records in the producer's JSON form, for runs without a broker."""

from __future__ import annotations

from pydantic import PositiveInt
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.config import Settings
from pipeline_lib.sources.base import Source, register_source


class RateSourceOptions(Settings):
    rows_per_second: PositiveInt = 10


@register_source("rate")
class RateSource(Source):
    """``value``: ``{"id": n, "value": 0..100, "timestamp": epoch seconds}``, n from 1."""

    Options = RateSourceOptions
    options: RateSourceOptions
    finite = False

    def describe(self) -> str:
        return f"{self.options.rows_per_second} synthetic records/s"

    def read_stream(self, spark: SparkSession) -> DataFrame:
        rate = spark.readStream.format("rate").option("rowsPerSecond", self.options.rows_per_second).load()
        record = F.struct(
            (F.col("value") + 1).alias("id"),
            (F.col("value") * 37 % 101).cast("int").alias("value"),
            (F.unix_micros("timestamp") / 1e6).alias("timestamp"),
        )
        return rate.select(F.to_json(record).alias("value"))
