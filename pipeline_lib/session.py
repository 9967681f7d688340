"""The one SparkSession builder, shared by the jobs, the tests and notebooks."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Iterable, List, Mapping, Optional

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

JARS_ENV = "PIPELINE_JARS"
# In a checkout, `make jars` puts the Kafka connector here; found without any setting.
CHECKOUT_JARS = Path(__file__).resolve().parent.parent / "infra" / "spark" / "jars"
LOG_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
CLASS_ARCHIVE_ENV = "PIPELINE_CLASS_ARCHIVE"
# In a checkout, `make spark-classes` writes the driver's class archive here (infra/spark/archive-classes).
CHECKOUT_CLASS_ARCHIVE = Path(__file__).resolve().parent.parent / "infra" / "spark" / "classes" / "driver.jsa"

# HotSpot leaves a method of over 8,000 bytes of bytecode to the interpreter. The code Spark
# generates for the parse's checks and the one-pass write's lines passes that size once a schema
# is a few fields wider than the seed's, and its batches then take up to 1.8 times as long.
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"

LOCAL_DEFAULTS = {
    # Two cores here; the default of 200 shuffle partitions makes tiny batches crawl.
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    # Source options holding secrets (JAAS config, PEM key) are masked in plans and the UI.
    "spark.sql.redaction.options.regex": "(?i)url|jaas|password|keystore\\.key",
    # The driver's own JVM takes JIT_OPTIONS from its command line (get_spark, infra/spark/submit).
    "spark.executor.extraJavaOptions": JIT_OPTIONS,
}


def connector_jars(spec: Optional[str] = None) -> List[str]:
    """The jar files named by ``spec``: a comma-separated list of jar files or folders of jars.
    By default ``$PIPELINE_JARS``, else the checkout's ``infra/spark/jars`` (``make jars``).

    >>> connector_jars("infra/spark/jars")  # doctest: +SKIP
    ['infra/spark/jars/commons-pool2-2.13.1.jar', ...]
    """
    if spec is None:
        spec = os.environ.get(JARS_ENV) or (str(CHECKOUT_JARS) if CHECKOUT_JARS.is_dir() else "")
    jars: List[str] = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        jars.extend(sorted(glob.glob(os.path.join(entry, "*.jar"))) if os.path.isdir(entry) else [entry])
    return jars


def class_archive_options(path: Optional[str] = None) -> Optional[str]:
    """The driver JVM's options that map the class archive ``path`` (default
    ``$PIPELINE_CLASS_ARCHIVE``, else the checkout's), or None when there is none: the JVM then
    loads Spark's classes from the jars, seconds slower. An archive of another JDK or class path
    is passed over without a word.

    >>> class_archive_options("infra/spark/classes/driver.jsa")  # doctest: +SKIP
    '-XX:SharedArchiveFile=infra/spark/classes/driver.jsa -Xlog:cds=off -Xlog:cds+dynamic=off'
    """
    path = path or os.environ.get(CLASS_ARCHIVE_ENV) or str(CHECKOUT_CLASS_ARCHIVE)
    return f"-XX:SharedArchiveFile={path} -Xlog:cds=off -Xlog:cds+dynamic=off" if os.path.isfile(path) else None


def launched_by_spark_submit() -> bool:
    """True when spark-submit started this Python process and owns master, jars and py-files."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _unset_defaults() -> Mapping[str, str]:
    """:data:`LOCAL_DEFAULTS` less what spark-submit's ``--conf`` already set."""
    if not launched_by_spark_submit():
        return LOCAL_DEFAULTS
    SparkContext._ensure_initialized()
    submitted = SparkConf()  # reads the JVM's spark.* properties, i.e. spark-submit's settings
    return {key: value for key, value in LOCAL_DEFAULTS.items() if not submitted.contains(key)}


def get_spark(
    app_name: str = "pipeline",
    master: Optional[str] = None,
    jars: Optional[Iterable[str]] = None,
    log_level: str = "WARN",
    conf: Optional[Mapping[str, str]] = None,
) -> SparkSession:
    """Get or create a SparkSession with local defaults.

    Outside spark-submit it runs on ``master`` (default ``$SPARK_MASTER`` or ``local[*]``) with
    the Kafka connector ``jars`` (default from ``$PIPELINE_JARS``) and the driver's class
    archive (:func:`class_archive_options`); under spark-submit those come from its command
    line. ``conf`` overrides :data:`LOCAL_DEFAULTS` and adds settings.

    >>> spark = get_spark("notebook")  # doctest: +SKIP
    """
    # Executors start `python3` from PATH unless told otherwise, which lacks this environment's
    # packages (pyarrow, pandas) when it runs from a virtualenv.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        builder = builder.master(master or os.environ.get("SPARK_MASTER", "local[*]"))
        jar_list = list(jars) if jars is not None else connector_jars()
        if jar_list:
            builder = builder.config("spark.jars", ",".join(jar_list))
        # Spark's start-up chatter goes nowhere; warnings of the job itself still show.
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()} {JIT_OPTIONS}"
        )
        archive = class_archive_options()
        if archive:
            builder = builder.config("spark.driver.defaultJavaOptions", archive)
    for key, value in {**_unset_defaults(), **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    return spark
