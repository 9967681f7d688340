"""Kestra's own engine, started once for the whole test run and stopped at its end."""

from __future__ import annotations

import os

import pytest

from infra.kestra.run_flow import JavaNotFound, KestraEngine, find_java


@pytest.fixture(scope="session")
def kestra(tmp_path_factory):
    """A running :class:`KestraEngine` (Kestra 2.0's executor, worker and indexer in one JVM).

    Without Java 25 the tests that need it are skipped, saying why, except under CI (env ``CI``
    set), where that is a failure."""
    try:
        java_home = find_java()
    except JavaNotFound as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    engine = KestraEngine(home=tmp_path_factory.mktemp("kestra"), java_home=java_home)
    engine.start()
    yield engine
    engine.stop()
