"""Named registries of extensions (transforms, sources, sinks), open to other packages.

A registry maps a name to a factory. The project registers its own with the decorator; an
installed package adds its own through an entry point in the registry's group, loaded the first
time a name is missing or the names are listed. No pyspark here: the producer imports it too.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Callable, Dict, Generic, Tuple, TypeVar

from pipeline_lib.errors import PipelineError

T = TypeVar("T")


class UnknownNameError(PipelineError, ValueError):
    """A name that a registry does not know; the message lists the names it does know."""


class Registry(Generic[T]):
    """Names to factories of one kind (``kind`` is used in messages: "transform", "sink")."""

    def __init__(self, kind: str, entry_point_group: str):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a factory under ``name``.

        The same function or class defined again (a notebook cell run twice) replaces itself;
        another one under a taken name is refused.
        """

        def decorator(factory: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and _origin(existing) != _origin(factory):
                raise ValueError(f"a {self.kind} named {name!r} is already registered by {'.'.join(_origin(existing))}")
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> Tuple[str, ...]:
        """Every registered name, sorted, including those of installed plugins."""
        self._load_entry_points()
        return tuple(sorted(self._entries))

    def get(self, name: str) -> T:
        """The factory registered as ``name``, or :class:`UnknownNameError` listing the known."""
        if name not in self._entries:
            self._load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def _load_entry_points(self) -> None:
        for entry_point in entry_points(group=self.entry_point_group):
            if entry_point.name not in self._entries:
                self._entries[entry_point.name] = entry_point.load()


def _origin(factory: object) -> Tuple[str, str]:
    return (getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory)))


def check_overrides(cls: type, base: type) -> None:
    """Refuse a subclass of ``base`` whose override of one of ``base``'s methods takes other
    parameters: a drifted signature fails where the class is defined, not in a user's stream.

    >>> class Base:
    ...     def write(self, rows, batch_id): ...
    >>> class Drifted(Base):
    ...     def write(self, batch_id): ...
    >>> check_overrides(Drifted, Base)
    Traceback (most recent call last):
    ...
    TypeError: Drifted.write(self, batch_id) does not match Base.write(self, rows, batch_id)
    """
    for name, expected in vars(base).items():
        if name.startswith("_") or not inspect.isfunction(expected):
            continue
        actual = inspect.getattr_static(cls, name)
        if not inspect.isfunction(actual) or actual is expected:
            continue
        wanted = [parameter.name for parameter in inspect.signature(expected).parameters.values()]
        given = [parameter.name for parameter in inspect.signature(actual).parameters.values()]
        if given != wanted:
            raise TypeError(
                f"{cls.__name__}.{name}({', '.join(given)}) does not match {base.__name__}.{name}({', '.join(wanted)})"
            )
