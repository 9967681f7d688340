"""The typed step a transform becomes in a pipeline: the transform and what a runner must know of it.

A transform is any ``DataFrame -> DataFrame`` callable. The runner needs to know a little more:
whether it keeps every row (then the output's row count is known without counting again),
whether it works row by row and passes other columns through (then a batch's rejected rows may
go through it with the valid ones, for a write of both sinks in one pass),
whether it keeps state across micro-batches (then it runs on the stream, not on one batch),
whether its options can only be checked by Spark on the rows' schema (SQL text, column names),
and what it counts. The library's factories return a :class:`Step` saying so; a plugin's factory
that returns a plain callable gets a step with nothing declared (:func:`as_step`).

>>> step = Step(lambda df: df.withColumn("one", F.lit(1)), keeps_rows=True)
>>> spark.range(2).transform(step).columns
['id', 'one']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Mapping, Optional

from pyspark.sql import Column, DataFrame

Transform = Callable[[DataFrame], DataFrame]
# Given the rows going into a step, aggregate columns by label, observed on each micro-batch.
Metrics = Callable[[DataFrame], Dict[str, Column]]


@dataclass(frozen=True)
class Step:
    """A transform and what a runner must know of it; usable wherever a transform is
    (``df.transform(step)``)."""

    transform: Transform
    keeps_rows: bool = False  # neither adds nor drops rows (adds or changes columns)
    # Computes each row's new columns from that row alone, null-safe, and passes every other
    # column through untouched (the parse's marks too): rows it is not meant for can go through
    # it unharmed. The runner sends a batch's rejected rows through a step so declared only
    # when it also keeps_rows and has no metrics, which would count them.
    row_wise: bool = False
    stateful: bool = False  # keeps state across micro-batches (a watermarked window)
    checked_on_schema: bool = False  # options only Spark can check, on the rows' schema
    metrics: Optional[Metrics] = None
    name: str = ""  # the registered name, when built from a configuration
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, df: DataFrame) -> DataFrame:
        return self.transform(df)

    def describe(self) -> str:
        """The step as a configuration names it: ``expect(name='positive', ...)``.

        >>> Step(lambda df: df, name="add_processed_value", options={"factor": 3}).describe()
        'add_processed_value(factor=3)'
        """
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{self.name or getattr(self.transform, '__name__', 'transform')}({options})"


def as_step(transform: object, name: str = "", options: Optional[Mapping[str, Any]] = None) -> Step:
    """``transform`` as a :class:`Step` named ``name``: a step keeps what it declares, a plain
    callable declares nothing.

    >>> as_step(lambda df: df, "identity").keeps_rows
    False
    """
    if isinstance(transform, Step):
        step = transform
    elif callable(transform):
        step = Step(transform)
    else:
        raise TypeError(f"transform {name!r} gave {transform!r}, not a DataFrame -> DataFrame callable")
    if not name:
        return step
    return replace(step, name=name, options=dict(options or {}))
