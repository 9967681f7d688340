"""The seed's record schema, defined once for the producer, the parser and the tests; a user's
schema comes from the configuration, in Spark's DDL (``order_id long, amount decimal(10,2)``)."""

import re
from typing import List, Tuple

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DoubleType, IntegerType, LongType, StructField, StructType

RECORD_SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("value", IntegerType()),
        StructField("timestamp", DoubleType()),  # epoch seconds, fractional
    ]
)

REQUIRED_FIELDS = ("id", "value")

PROCESSED_COLUMNS = ("id", "value", "timestamp", "processed_value")


# The type names of Spark's DDL (its DataTypeAstBuilder), aliases included.
DDL_TYPES = frozenset(
    """boolean tinyint byte smallint short int integer bigint long float real double decimal dec numeric
    string char character varchar binary date timestamp timestamp_ntz timestamp_ltz time interval void
    variant array map struct""".split()
)
_NAME = re.compile(r"\s*(`(?:[^`]|``)+`|\w+)\s*")
_TYPE = re.compile(r"([A-Za-z_]+)")


def schema_field_names(ddl: str) -> Tuple[str, ...]:
    """The field names of a record schema in Spark's DDL, checked without Spark: each field is a
    name (backquoted if need be) and a known type, brackets and quotes are closed, no name comes
    twice. Spark's own parser reads the schema in the plan (:func:`record_schema`); this check
    names a typo before any JVM starts. Raises ValueError saying what is wrong.

    >>> schema_field_names("order_id long, amount decimal(10,2), `first name` string COMMENT 'as typed, kept'")
    ('order_id', 'amount', 'first name')
    >>> schema_field_names("order_id lng, amount decimal(10,2)")
    Traceback (most recent call last):
    ...
    ValueError: field 'order_id': unknown type 'lng'
    """
    if not ddl.strip():
        raise ValueError("is empty: write each field as a name and a type, separated by commas")
    names: List[str] = []
    for part in _top_level_fields(ddl):
        match = _NAME.match(part)
        if not part.strip():
            raise ValueError("has an empty field (a comma too many?)")
        if not match:
            raise ValueError(f"{part.strip()!r} is not a field: write a name and a type")
        quoted = match.group(1)
        name = quoted[1:-1].replace("``", "`") if quoted.startswith("`") else quoted
        kind = _TYPE.match(part[match.end() :])
        if not kind:
            raise ValueError(f"field {name!r} has no type")
        if kind.group(1).lower() not in DDL_TYPES:
            raise ValueError(f"field {name!r}: unknown type {kind.group(1)!r}")
        if name.lower() in (known.lower() for known in names):
            raise ValueError(f"field {name!r} comes twice (Spark matches names regardless of case)")
        names.append(name)
    return tuple(names)


def _top_level_fields(ddl: str) -> List[str]:
    """``ddl`` cut at its commas outside brackets, backquotes and quoted comments."""
    parts, depth, quote, start, index = [], 0, "", 0, 0
    while index < len(ddl):
        char = ddl[index]
        if quote:
            if char == "\\" and quote != "`":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{char!r} closes nothing")
        elif char == "," and depth == 0:
            parts.append(ddl[start:index])
            start = index + 1
        index += 1
    if quote or depth:
        raise ValueError("a bracket or quote is left open")
    return parts + [ddl[start:]]


def record_schema(ddl: str) -> StructType:
    """``ddl`` read by Spark's own DDL parser, which needs an active SparkContext.

    >>> record_schema("order_id long, amount decimal(10,2)").simpleString()
    'struct<order_id:bigint,amount:decimal(10,2)>'
    """
    parsed = DataType.fromDDL(ddl)
    if not isinstance(parsed, StructType):
        raise ValueError(f"{ddl!r} is a type, not a list of fields")
    return parsed


def column_named(name: str) -> Column:
    """The column named ``name``, a dot in it part of the name (``F.col`` reads one as a
    nested field's path, and a JSON record's field may well be called ``price.eur``).

    >>> spark.createDataFrame([(1,)], "`price.eur` int").select(column_named("price.eur")).columns
    ['price.eur']
    """
    return F.col("`" + name.replace("`", "``") + "`")
