"""Pure ``DataFrame -> DataFrame`` transforms, built only from Spark column functions.

Every public transform here is a *factory*: it takes options and returns the transform, so
pipelines read left to right::

    df.transform(parse_json()).transform(valid_records()).transform(add_processed_value(2))

Nothing in this module reads or writes data or creates a SparkSession; it works the same on batch
and streaming DataFrames.

Factories are registered by name so a pipeline configuration can list them
(``get_transform("add_processed_value", factor=3)``). Another package adds its own with
``@register_transform("name")`` or through the ``pipeline_lib.transforms`` entry-point group.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import reduce
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from pyspark.errors import PySparkException
from pyspark.logger import PySparkLogger
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from pipeline_lib.registry import Registry, UnknownNameError
from pipeline_lib.schema import PROCESSED_COLUMNS, RECORD_SCHEMA, REQUIRED_FIELDS, column_named
from pipeline_lib.steps import Step, Transform, as_step

TransformFactory = Callable[..., Union[Transform, Step]]

ERROR_COLUMN = "_error"
PAYLOAD_COLUMN = "_payload"
PAYLOAD_BASE64_COLUMN = "_payload_base64"
MARKER_COLUMNS = (ERROR_COLUMN, PAYLOAD_COLUMN, PAYLOAD_BASE64_COLUMN)

# A record of this schema is under 100 bytes. Anything far larger is a runaway message, and
# parsing it would only slow the batch it arrives in.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024

# The parse stage, which a pipeline runs before its configured transforms.
PARSE_STAGE = ("parse_json", "valid_records", "quarantined_records")

TRANSFORMS: Registry[TransformFactory] = Registry("transform", "pipeline_lib.transforms")


class UnknownTransformError(UnknownNameError):
    """A transform name or option that the registry does not know."""


def register_transform(name: str) -> Callable[[TransformFactory], TransformFactory]:
    """Register a transform factory under ``name`` so configurations can refer to it. The
    same function defined again (a notebook cell run twice) replaces itself.

    >>> @register_transform("add_one")
    ... def add_one(column: str = "value") -> Transform:
    ...     return lambda df: df.withColumn(column, F.col(column) + 1)
    """
    return TRANSFORMS.register(name)


def known_transforms() -> Tuple[str, ...]:
    """The registered transform names, sorted, including those of installed plugins."""
    return TRANSFORMS.names()


def get_transform(name: str, /, **options: object) -> Step:
    """Build the registered transform ``name`` with ``options``, as a :class:`Step`.

    >>> df.transform(get_transform("add_processed_value", factor=3))  # doctest: +SKIP

    Raises :class:`UnknownTransformError` naming the known transforms, or the accepted options.
    """
    try:
        factory = TRANSFORMS.get(name)
    except UnknownNameError as error:
        raise UnknownTransformError(str(error)) from error
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UnknownTransformError(
            f"transform {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return as_step(factory(**options), name, options)


def keeps_rows(transform: Transform) -> Step:
    """``transform`` as a step that neither adds nor drops rows (it adds or changes columns),
    which lets a pipeline count its output without counting again.

    >>> keeps_rows(lambda df: df.withColumn("one", F.lit(1))).keeps_rows
    True
    """
    return Step(transform, keeps_rows=True)


def _first_match(cases: Iterable[Tuple[Column, str]]) -> Column:
    """``CASE WHEN c1 THEN m1 WHEN c2 THEN m2 ... END``: the message of the first true case."""
    cases = list(cases)
    (condition, message), rest = cases[0], cases[1:]
    return reduce(lambda acc, case: acc.when(case[0], case[1]), rest, F.when(condition, message))


def _json_path(field: str) -> str:
    return "$['" + field.replace("'", "\\'") + "']"


def _rejection_cases(
    raw: Column,
    text: Column,
    values: Mapping[str, Column],
    schema: StructType,
    required: Sequence[str],
    too_large: Column,
    max_bytes: Optional[int],
) -> List[Tuple[Column, str]]:
    """``(condition, reason)`` pairs, first match wins; none matches for a good row."""
    keys = F.json_object_keys(text)  # null unless the payload is a JSON object
    cases = [
        (raw.isNull(), "payload is null"),
        (too_large, f"payload exceeds {max_bytes} bytes"),
        (~F.is_valid_utf8(text), "payload is not valid UTF-8"),
        (F.trim(text) == "", "payload is empty"),
        (keys.isNull() & F.json_array_length(text).isNotNull(), "expected a JSON object, got an array"),
        (keys.isNull() & F.get_json_object(text, "$").isNotNull(), "expected a JSON object, got a scalar"),
        (keys.isNull(), "invalid JSON"),
    ]
    for name in required:
        cases.append((~F.array_contains(keys, name), f"missing required field '{name}'"))
        cases.append(
            (values[name].isNull() & F.get_json_object(text, _json_path(name)).isNull(), f"field '{name}' is null")
        )
    for field in schema.fields:
        cases.append(
            (
                values[field.name].isNull() & F.get_json_object(text, _json_path(field.name)).isNotNull(),
                f"field '{field.name}' is not a valid {field.dataType.simpleString()}",
            )
        )
    return cases


def _read_as(field: StructField) -> DataType:
    """The type ``from_json`` reads ``field`` as, for :func:`_field_value` to finish.

    A timestamp is read as text: from_json takes a JSON number as whole epoch seconds, wrapping
    around silently past the long range, and refuses a fractional one. A decimal is read with
    every digit its integral part allows: from_json rounds 12.345 to 12.35 without a word.
    """
    kind = field.dataType
    if isinstance(kind, TimestampType):
        return StringType()
    if isinstance(kind, DecimalType) and kind.precision < 38:
        return DecimalType(38, 38 - kind.precision + kind.scale)
    return kind


def _field_value(field: StructField, read: Column, text: Column) -> Column:
    """The value of ``field`` from what :func:`_read_as` read; null when it does not fit."""
    kind = field.dataType
    if isinstance(kind, TimestampType):
        # Text that reads as a number is either a JSON number or a string of digits: a parse of
        # the field alone as a double tells them apart, for these rows only.
        number = F.from_json(text, StructType([StructField(field.name, DoubleType())]))[field.name]
        return F.when(read.try_cast("double").isNull(), _iso_timestamp(read)).otherwise(_epoch_timestamp(number))
    if isinstance(kind, DecimalType) and kind.precision < 38:
        exact = read.try_cast(kind)
        return F.when(exact == read, exact)
    return read


class _ParseColumns(NamedTuple):
    """The columns of :func:`parse_json`: those of its first projection (the parsed JSON and
    the barrier), then those of its second (the typed fields, then the marker columns)."""

    parsed: Column
    barrier: Column
    fields: List[Column]
    markers: List[Column]


def _parse_columns(schema: StructType, column: str, required: Sequence[str], max_bytes: Optional[int]) -> _ParseColumns:
    raw = F.col(column)
    text = raw.cast("string")
    read_schema = StructType([StructField(field.name, _read_as(field)) for field in schema.fields])
    parsed = F.col("_parsed")
    values = {field.name: _field_value(field, parsed[field.name], text) for field in schema.fields}
    valid_utf8 = F.is_valid_utf8(text)
    too_large = F.octet_length(raw) > max_bytes if max_bytes is not None else F.lit(False)
    # A row with every field parsed, of sane size and UTF-8 is good and costs nothing more.
    # Only the others are re-read to find the reason: Spark evaluates a CASE branch only for the
    # rows that reach it.
    suspect = reduce(
        lambda a, b: a | b,
        [raw.isNull(), too_large, ~valid_utf8] + [value.isNull() for value in values.values()],
    )
    reason = F.when(
        suspect & (F.col("_barrier") >= 0),
        _first_match(_rejection_cases(raw, text, values, schema, required, too_large, max_bytes)),
    )
    return _ParseColumns(
        parsed=F.from_json(text, read_schema).alias("_parsed"),
        barrier=F.spark_partition_id().alias("_barrier"),
        fields=[value.alias(name) for name, value in values.items()],
        markers=[
            reason.alias(ERROR_COLUMN),
            F.when(suspect, F.when(valid_utf8, text).otherwise(F.make_valid_utf8(text))).alias(PAYLOAD_COLUMN),
            F.when(~valid_utf8, F.base64(raw.cast("binary"))).alias(PAYLOAD_BASE64_COLUMN),
        ],
    )


@register_transform("parse_json")
def parse_json(
    schema: StructType = RECORD_SCHEMA,
    column: str = "value",
    required: Sequence[str] = REQUIRED_FIELDS,
    max_bytes: Optional[int] = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Transform:
    """Parse the JSON payload in ``column`` (string or Kafka's binary) into typed columns.

    No row is dropped and no bad value becomes a silent null. The result has the ``schema``
    fields first, then every other input column (Kafka's topic, partition, offset, ...), then
    three marker columns: ``_error`` (null for a good row, else the reason), ``_payload`` (the
    payload as text, for rejected rows) and ``_payload_base64`` (the exact bytes, only when they
    are not UTF-8). An input column named like one of these is refused, never overwritten.
    Follow it with :func:`valid_records` and :func:`quarantined_records`, or use
    :func:`split_valid`.

    A row is rejected, with the first matching reason, when its payload is null, larger than
    ``max_bytes``, not UTF-8, empty, not JSON, a JSON array or scalar, lacks a ``required``
    field or has it null, or has a field whose JSON value does not fit the schema type
    (``"75"`` or ``75.5`` for an integer, a number past the type's range, 12.345 for a
    ``decimal(10,2)``). A ``timestamp`` field takes ISO-8601 text (``2024-05-08T15:20:00.123Z``;
    without an offset, in the session's time zone) or a JSON number of epoch seconds. Unknown
    fields are ignored.

    >>> df = spark.createDataFrame([('{"id": 1, "value": 75}',), ('{"id": 2}',)], "value string")
    >>> df.transform(parse_json()).select("id", "value", "_error").show(truncate=False)
    +---+-----+------------------------------+
    |id |value|_error                        |
    +---+-----+------------------------------+
    |1  |75   |NULL                          |
    |2  |NULL |missing required field 'value'|
    +---+-----+------------------------------+
    """
    unknown_required = [name for name in required if name not in schema.fieldNames()]
    if unknown_required:
        raise ValueError(f"required fields {unknown_required} are not in the schema")
    # Made on the first call and kept: they do not depend on the DataFrame, and making them
    # takes more time than planning a small batch (about 60 ms of 90), for a transform applied
    # to every micro-batch in a foreachBatch of a user's own.
    made: List[_ParseColumns] = []

    def transform(df: DataFrame) -> DataFrame:
        others = [name for name in df.columns if name != column]
        clashes = [name for name in others if name in schema.fieldNames() or name in MARKER_COLUMNS]
        if clashes:
            raise ValueError(
                f"input columns {clashes} would be replaced by parse_json's output; rename them first "
                f"(the Kafka sources give Kafka's timestamp as kafka_timestamp)"
            )
        # The optimizer pushes a filter on _error (valid_records) below a deterministic
        # projection, copying from_json into it: the JSON would be parsed twice. A projection
        # holding a nondeterministic column stops that push, so the JSON is parsed once; the
        # column (the partition id) is referenced below so that it is not pruned away.
        if not made:
            made.append(_parse_columns(schema, column, required, max_bytes))
        columns = made[0]
        staged = df.select(*others, column, columns.parsed, columns.barrier)
        return staged.select(*columns.fields, *others, *columns.markers)

    return transform


@register_transform("valid_records")
def valid_records() -> Transform:
    """Keep the rows :func:`parse_json` accepted, without its marker columns.

    >>> parsed.transform(valid_records()).columns  # doctest: +SKIP
    ['id', 'value', 'timestamp', 'topic', 'partition', 'offset', 'kafka_timestamp', 'headers']
    """

    def transform(df: DataFrame) -> DataFrame:
        return df.where(F.col(ERROR_COLUMN).isNull()).drop(*MARKER_COLUMNS)

    return transform


@register_transform("quarantined_records")
def quarantined_records(schema: StructType = RECORD_SCHEMA) -> Transform:
    """Keep the rows :func:`parse_json` rejected, as they arrived, with the reason.

    Columns: ``payload``, ``payload_base64``, every non-record input column (for Kafka: topic,
    partition, offset, kafka_timestamp) and ``reason``.

    >>> parsed.transform(quarantined_records()).select("payload", "reason").show()  # doctest: +SKIP
    +-------+------------+
    |payload|      reason|
    +-------+------------+
    |{"id": |invalid JSON|
    +-------+------------+
    """

    def transform(df: DataFrame) -> DataFrame:
        columns = quarantine_columns(df.columns, schema)
        return df.where(F.col(ERROR_COLUMN).isNotNull()).select(
            *[column.alias(name) for name, column in columns.items()]
        )

    return transform


def quarantine_columns(columns: Sequence[str], schema: StructType = RECORD_SCHEMA) -> Dict[str, Column]:
    """The columns :func:`quarantined_records` gives rows of ``columns`` (a parsed frame's), by
    name, in order.

    >>> list(quarantine_columns(["id", "value", "timestamp", "topic", "_error", "_payload", "_payload_base64"]))
    ['payload', 'payload_base64', 'topic', 'reason']
    """
    lineage = [name for name in columns if name not in schema.fieldNames() and name not in MARKER_COLUMNS]
    return {
        "payload": F.col(PAYLOAD_COLUMN),
        "payload_base64": F.col(PAYLOAD_BASE64_COLUMN),
        **{name: column_named(name) for name in lineage},
        "reason": F.col(ERROR_COLUMN),
    }


def split_valid(parsed: DataFrame, schema: StructType = RECORD_SCHEMA) -> Tuple[DataFrame, DataFrame]:
    """Split the output of :func:`parse_json` into ``(valid, quarantined)``.

    >>> good, bad = split_valid(df.transform(parse_json()))  # doctest: +SKIP
    """
    return parsed.transform(valid_records()), parsed.transform(quarantined_records(schema))


@register_transform("add_processed_value")
def add_processed_value(factor: Union[int, float] = 2, source: str = "value", target: str = "processed_value") -> Step:
    """Add ``target = source * factor``.

    The source is widened to long (or double for a fractional factor or a floating-point source)
    first: Spark 4 runs in ANSI mode, where an int overflow would fail the whole query on one
    large value. A decimal source stays exact (Spark widens the product's precision).

    >>> df = spark.createDataFrame([(75,)], "value int")
    >>> df.transform(add_processed_value(2)).show()
    +-----+---------------+
    |value|processed_value|
    +-----+---------------+
    |   75|            150|
    +-----+---------------+
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"factor must be a number, got {factor!r}")

    def transform(df: DataFrame) -> DataFrame:
        kind = _type_of(df, source)
        if isinstance(factor, float) or isinstance(kind, (FloatType, DoubleType)):
            widened = column_named(source).cast("double")
        elif isinstance(kind, DecimalType):
            widened = column_named(source)
        else:
            widened = column_named(source).cast("long")
        return df.withColumn(target, widened * F.lit(factor))

    return Step(transform, keeps_rows=True, row_wise=True)


def _type_of(df: DataFrame, column: str) -> DataType:
    try:
        with _quiet_spark_errors():
            return df.select(column_named(column)).schema.fields[0].dataType
    except PySparkException as error:
        raise ValueError(f"column {column!r}: {_first_line(error)}") from error


# timestamp_seconds overflows (an ANSI error that would stop the query) far past year 9999.
_MAX_EPOCH_SECONDS = 253402300799.0  # 9999-12-31T23:59:59Z

# ISO-8601 as producers write it: T or a space between date and time, seconds and their
# fraction optional, an offset (Z, +02:00) optional.
_ISO_TIMESTAMP = "yyyy-MM-dd['T'][' ']HH:mm[:ss][.SSSSSS][XXX]"


def _iso_timestamp(text: Column) -> Column:
    """ISO-8601 ``text`` as a timestamp (a date alone: its midnight), null for any other text.
    A pattern rather than a cast: Spark casts 'yesterday' or 'now' to a timestamp too."""
    return F.coalesce(F.try_to_timestamp(text, F.lit(_ISO_TIMESTAMP)), F.try_to_timestamp(text, F.lit("yyyy-MM-dd")))


def _epoch_timestamp(seconds: Column) -> Column:
    """Epoch ``seconds`` (a double) as a timestamp; null outside years 0001..9999."""
    return F.when(F.abs(seconds) <= F.lit(_MAX_EPOCH_SECONDS), F.timestamp_seconds(seconds))


def _as_timestamp(df: DataFrame, source: str) -> Column:
    """The column ``source`` of ``df`` as a timestamp: a timestamp or date as it is, text as
    ISO-8601 or epoch seconds, a number as epoch seconds."""
    kind = _type_of(df, source)
    column = column_named(source)
    if isinstance(kind, (TimestampType, TimestampNTZType, DateType)):
        return column.cast("timestamp")
    if isinstance(kind, StringType):
        return F.coalesce(_iso_timestamp(column), _epoch_timestamp(column.try_cast("double")))
    return _epoch_timestamp(column.cast("double"))


@register_transform("with_event_time")
def with_event_time(source: str = "timestamp", target: str = "event_time") -> Step:
    """Add ``target``, the Spark timestamp of ``source``: epoch seconds (a number), ISO-8601
    text (``2024-05-08T15:20:00.123Z``) or a timestamp already.

    Use it to window and watermark by event time. Seconds outside years 0001..9999, and text
    that is neither, give null.

    >>> df = spark.createDataFrame([(1715181600.123,)], "timestamp double")
    >>> df.transform(with_event_time()).show(truncate=False)
    +----------------+-----------------------+
    |timestamp       |event_time             |
    +----------------+-----------------------+
    |1.715181600123E9|2024-05-08 15:20:00.123|
    +----------------+-----------------------+
    """

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(target, _as_timestamp(df, source))

    return Step(transform, keeps_rows=True, row_wise=True)


EVENT_DATE_UNITS = {"day": "yyyy-MM-dd", "hour": "yyyy-MM-dd'T'HH"}


@register_transform("with_event_date")
def with_event_date(source: str = "event_time", target: str = "date", unit: str = "day") -> Step:
    """Add ``target``, the day (``2024-05-08``) or the hour (``2024-05-08T15``) of the event time
    in ``source`` (any column :func:`with_event_time` takes), in the session's time zone, as
    text: a column to partition the output by (``output: {partition_by: [date]}``).

    >>> df = spark.createDataFrame([("2024-05-08T15:20:00.123Z",)], "ts string")
    >>> df.transform(with_event_date("ts")).transform(with_event_date("ts", "hour", unit="hour")).show(truncate=False)
    +------------------------+----------+-------------+
    |ts                      |date      |hour         |
    +------------------------+----------+-------------+
    |2024-05-08T15:20:00.123Z|2024-05-08|2024-05-08T15|
    +------------------------+----------+-------------+
    """
    if unit not in EVENT_DATE_UNITS:
        raise ValueError(f"unit {unit!r} is not one of {', '.join(EVENT_DATE_UNITS)}")

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(target, F.date_format(_as_timestamp(df, source), EVENT_DATE_UNITS[unit]))

    return Step(transform, keeps_rows=True, row_wise=True)


@register_transform("select_columns")
def select_columns(columns: Sequence[str] = PROCESSED_COLUMNS) -> Step:
    """Keep ``columns``, in that order.

    >>> df.transform(select_columns(["id", "processed_value"])).columns  # doctest: +SKIP
    ['id', 'processed_value']
    """

    def transform(df: DataFrame) -> DataFrame:
        missing = [name for name in columns if name not in df.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in the DataFrame; it has {df.columns}")
        # Rows rejected by an earlier step keep their marks, so they still reach the quarantine.
        kept = [*columns, *[name for name in MARKER_COLUMNS if name in df.columns and name not in columns]]
        return df.select(*[column_named(name) for name in kept])

    return Step(transform, keeps_rows=True)


ON_VIOLATION = ("warn", "drop", "quarantine", "fail")
# Columns telling where a row came from (Kafka's, the files source's), named when an
# expectation stops the query.
LOCATION_COLUMNS = ("topic", "partition", "offset", "source_file")


@contextmanager
def _quiet_spark_errors() -> Iterator[None]:
    """PySpark logs every SQL error it raises, with its stack; an error reported in one line
    by the caller needs no such copy. PySpark's own logger class: a plain one made here first
    would take the name, and PySpark's next error log would fail on its keyword arguments."""
    loggers = [PySparkLogger.getLogger(name) for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


# How an expectation's violations are labelled in the batch reports; the Prometheus listener
# reads the name and the action back from it.
EXPECTATION_LABEL = "expectation '{name}' ({on_violation}) violations"


@register_transform("expect")
def expect(name: str, condition: str, on_violation: str = "warn", schema: StructType = RECORD_SCHEMA) -> Step:
    """Check every row against ``condition``, a Spark SQL expression; a row violates it unless
    the condition is true (null violates too). Rows that an earlier step rejected are not checked.

    ``on_violation``: ``warn`` keeps the row, ``drop`` leaves it out, ``quarantine`` rejects it
    with the reason ``expectation 'name' failed`` (marked as :func:`parse_json` marks its rejects,
    so :func:`valid_records` and :func:`quarantined_records` split them; the payload is the record
    as JSON), ``fail`` stops the query with a message naming the expectation and where the
    offending row came from. Except with ``fail``, the violations are counted (``metrics``).
    A condition that is not SQL, names a missing column or is not true/false raises ValueError.

    >>> df = spark.createDataFrame([(1, 75), (2, 140)], "id long, value int")
    >>> df.transform(expect("in_range", "value BETWEEN 0 AND 100", "drop")).show()
    +---+-----+
    | id|value|
    +---+-----+
    |  1|   75|
    +---+-----+
    >>> marked = df.transform(expect("in_range", "value BETWEEN 0 AND 100", "quarantine"))
    >>> marked.transform(quarantined_records()).select("payload", "reason").show(truncate=False)
    +--------------------+-----------------------------+
    |payload             |reason                       |
    +--------------------+-----------------------------+
    |{"id":2,"value":140}|expectation 'in_range' failed|
    +--------------------+-----------------------------+
    """
    if on_violation not in ON_VIOLATION:
        raise ValueError(f"on_violation {on_violation!r} is not one of {', '.join(ON_VIOLATION)}")
    if not name or not condition:
        raise ValueError("an expectation needs a name and a condition")
    reason = f"expectation '{name}' failed"

    def violated(df: DataFrame) -> Column:
        try:
            with _quiet_spark_errors():
                result_type = df.select(F.expr(condition)).schema.fields[0].dataType
        except Exception as error:  # noqa: BLE001 (Spark's parse and analysis errors alike)
            raise ValueError(
                f"expectation {name!r}: condition {condition!r} is not valid: {_first_line(error)}"
            ) from error
        if result_type.simpleString() != "boolean":
            raise ValueError(
                f"expectation {name!r}: condition {condition!r} gives {result_type.simpleString()}, not true/false"
            )
        broken = ~F.coalesce(F.expr(condition), F.lit(False))
        return broken & F.col(ERROR_COLUMN).isNull() if ERROR_COLUMN in df.columns else broken

    def failure(df: DataFrame) -> Column:
        located = [
            F.concat(F.lit(f"{column} "), F.col(column).cast("string"))
            for column in LOCATION_COLUMNS
            if column in df.columns
        ]
        whole_row = F.to_json(F.struct(*[column_named(name) for name in df.columns]))
        where = F.concat_ws(", ", *located) if located else F.concat(F.lit("row "), whole_row)
        return F.concat(F.lit(f"{reason} at "), where, F.lit(f": {condition}"))

    def transform(df: DataFrame) -> DataFrame:
        broken = violated(df)
        if on_violation == "warn":
            return df
        if on_violation == "drop":
            return df.where(~broken)
        if on_violation == "fail":
            return df.where(F.when(broken, F.raise_error(failure(df))).isNull())
        earlier = {
            column: F.col(column) if column in df.columns else F.lit(None).cast("string") for column in MARKER_COLUMNS
        }
        record = F.to_json(F.struct(*[column_named(name) for name in schema.fieldNames() if name in df.columns]))
        return df.withColumns(
            {
                ERROR_COLUMN: F.when(broken, F.lit(reason)).otherwise(earlier[ERROR_COLUMN]),
                PAYLOAD_COLUMN: F.when(broken, record).otherwise(earlier[PAYLOAD_COLUMN]),
                PAYLOAD_BASE64_COLUMN: earlier[PAYLOAD_BASE64_COLUMN],
            }
        )

    label = EXPECTATION_LABEL.format(name=name, on_violation=on_violation)
    return Step(
        transform,
        keeps_rows=on_violation in ("warn", "fail"),
        checked_on_schema=True,
        # A failing expectation stops the query at its first violation: there is nothing to count.
        metrics=None if on_violation == "fail" else lambda df: {label: F.count_if(violated(df))},
    )


@register_transform("window_stats")
def window_stats(
    window: str = "10 seconds", watermark: str = "30 seconds", time_column: str = "event_time", value: str = "value"
) -> Step:
    """Count, average and maximum of ``value`` per tumbling ``window`` of event time, accepting
    rows up to ``watermark`` behind the latest event time seen. On a stream it keeps state across
    micro-batches and, in append mode, emits a window once, when the watermark passes its end;
    rows older than the watermark are left out. Rows without an event time are left out too.
    Follow :func:`with_event_time`.

    >>> df = spark.createDataFrame(
    ...     [(1715181601.0, 10), (1715181605.5, 30), (1715181612.0, 7)], "timestamp double, value int"
    ... )
    >>> df.transform(with_event_time()).transform(window_stats()).orderBy("window_start").show()
    +-------------------+-------------------+-----+---------+---------+
    |       window_start|         window_end|count|avg_value|max_value|
    +-------------------+-------------------+-----+---------+---------+
    |2024-05-08 15:20:00|2024-05-08 15:20:10|    2|     20.0|       30|
    |2024-05-08 15:20:10|2024-05-08 15:20:20|    1|      7.0|        7|
    +-------------------+-------------------+-----+---------+---------+
    """

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.where(column_named(time_column).isNotNull())
            .withWatermark(time_column, watermark)
            .groupBy(F.window(time_column, window).alias("window"))
            .agg(F.count(F.lit(1)).alias("count"), F.avg(value).alias("avg_value"), F.max(value).alias("max_value"))
            .select(
                F.col("window.start").alias("window_start"),
                F.col("window.end").alias("window_end"),
                "count",
                "avg_value",
                "max_value",
            )
        )

    return Step(transform, stateful=True)
