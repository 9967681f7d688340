"""Throughput of the library's transforms against a Python-UDF baseline, measured in one run.

    make bench            # or: python bench/bench_transforms.py --rows 500000 --repeat 3

Both pipelines parse the same JSON payloads (5% malformed), validate them and add
processed_value. Figures are rows per second of the best of --repeat runs, and their ratio: this
machine is small and noisy, so compare the ratio, not the absolute numbers, across runs.
"""

from __future__ import annotations

import argparse
import json
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from pipeline_lib.session import get_spark
from pipeline_lib.transforms import add_processed_value, parse_json, valid_records

UDF_RESULT = StructType(
    [StructField("id", LongType()), StructField("value", IntegerType()), StructField("error", StringType())]
)


def payloads(spark, rows: int) -> DataFrame:
    """JSON records like the producer's; every 20th one malformed."""
    record = F.to_json(
        F.struct(F.col("id"), (F.col("id") % 101).cast("int").alias("value"), (F.col("id") * 0.001).alias("timestamp"))
    )
    return spark.range(1, rows + 1).select(
        F.when(F.col("id") % 20 == 0, F.lit("{broken")).otherwise(record).cast("binary").alias("value")
    ).cache()


def with_builtins(df: DataFrame) -> DataFrame:
    return df.transform(parse_json()).transform(valid_records()).transform(add_processed_value())


def with_python_udf(df: DataFrame) -> DataFrame:
    @F.udf(UDF_RESULT)
    def parse(payload):
        try:
            record = json.loads(bytes(payload).decode("utf-8"))
            return (int(record["id"]), int(record["value"]), None)
        except (ValueError, KeyError, TypeError) as error:
            return (None, None, str(error))

    parsed = df.select(parse("value").alias("r")).select("r.*")
    return parsed.where(F.col("error").isNull()).withColumn("processed_value", F.col("value").cast("long") * 2)


def rows_per_second(build, df: DataFrame, rows: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        build(df).write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - started)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = get_spark("bench", conf={"spark.ui.enabled": "false"})
    df = payloads(spark, args.rows)
    df.count()
    rows_per_second(with_builtins, df, args.rows, 1)  # warm-up: JIT, Python workers
    rows_per_second(with_python_udf, df, args.rows, 1)
    builtins = rows_per_second(with_builtins, df, args.rows, args.repeat)
    udf = rows_per_second(with_python_udf, df, args.rows, args.repeat)
    print(f"rows: {args.rows}, best of {args.repeat}")
    print(f"parse_json + add_processed_value (built-in functions): {builtins:12,.0f} rows/s")
    print(f"same logic as a Python UDF:                            {udf:12,.0f} rows/s")
    print(f"built-ins / UDF: {builtins / udf:.1f}x")


if __name__ == "__main__":
    main()
