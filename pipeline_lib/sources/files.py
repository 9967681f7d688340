"""The files source: each line of each new file in a folder is one payload (JSON lines)."""

from __future__ import annotations

import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.config import Settings
from pipeline_lib.errors import ConfigError
from pipeline_lib.sources.base import Source, register_source


class FilesSourceOptions(Settings):
    path: str


@register_source("files")
class FilesSource(Source):
    """``value`` (one line) and ``source_file``, the file it came from."""

    Options = FilesSourceOptions
    options: FilesSourceOptions

    def describe(self) -> str:
        return f"files in {self.options.path}"

    def check(self) -> None:
        path = self.options.path
        if "://" not in path and not os.path.isdir(path):
            raise ConfigError("source.path", f"{path} is not a folder")

    def read_stream(self, spark: SparkSession) -> DataFrame:
        return self._lines(spark.readStream.text(self.options.path))

    def read_batch(self, spark: SparkSession) -> DataFrame:
        return self._lines(spark.read.text(self.options.path))

    @staticmethod
    def _lines(df: DataFrame) -> DataFrame:
        return df.select("value", F.col("_metadata.file_path").alias("source_file"))
