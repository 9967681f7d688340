"""The files source: each line of each new file in a folder is one payload (JSON lines)."""

from __future__ import annotations

import os

from pydantic import field_validator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.config import Settings
from pipeline_lib.sources.base import Source, register_source


class FilesSourceOptions(Settings):
    path: str

    @field_validator("path")
    @classmethod
    def _folder(cls, value: str) -> str:
        if "://" not in value and not os.path.isdir(value):
            raise ValueError(f"{value} is not a folder")
        return value


@register_source("files")
class FilesSource(Source):
    """``value`` (one line) and ``source_file``, the file it came from."""

    Options = FilesSourceOptions
    options: FilesSourceOptions

    def describe(self) -> str:
        return f"files in {self.options.path}"

    def read_stream(self, spark: SparkSession) -> DataFrame:
        return self._lines(spark.readStream.text(self.options.path))

    def read_batch(self, spark: SparkSession) -> DataFrame:
        return self._lines(spark.read.text(self.options.path))

    @staticmethod
    def _lines(df: DataFrame) -> DataFrame:
        return df.select("value", F.col("_metadata.file_path").alias("source_file"))
