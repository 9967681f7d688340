"""Kestra's own engine, started once for the whole test run and stopped at its end."""

from __future__ import annotations

import os

import pytest

from infra.kestra.run_flow import DEFAULT_JAVA_HOME, JavaNotFound, KestraEngine, find_java
from tests.helpers import TEARDOWN_STOP_SECONDS

# Why the engine could not start, for the line at the end of the run.
MISSING_JAVA = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def kestra(tmp_path_factory, pytestconfig):
    """A running :class:`KestraEngine` (Kestra 2.0's executor, worker and indexer in one JVM).

    Without Java 25 the tests that need it are skipped, saying why, and the run ends with a
    line saying so; under CI (env ``CI`` set) that is a failure."""
    try:
        java_home = find_java()
    except JavaNotFound as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytestconfig.stash[MISSING_JAVA] = str(error)
        pytest.skip(str(error))
    engine = KestraEngine(home=tmp_path_factory.mktemp("kestra"), java_home=java_home)
    engine.start()
    yield engine
    engine.stop(timeout=TEARDOWN_STOP_SECONDS)


def pytest_terminal_summary(terminalreporter, config):
    missing = config.stash.get(MISSING_JAVA, None)
    if missing is not None:
        # A skip alone is easy to miss in a long run: say what did not run and how to run it.
        terminalreporter.write_sep("=", "not run: the flow on Kestra's engine (tests/flows)", yellow=True)
        terminalreporter.write_line(
            f"{missing}. Install a JDK 25 (Eclipse Temurin 25) in {DEFAULT_JAVA_HOME}, or set "
            "KESTRA_JAVA_HOME to the home of one, then run: make test-kestra"
        )
