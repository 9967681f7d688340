"""The Prometheus listener on its own: reports in, a real HTTP scrape out (no Spark, no broker)."""

import re
import urllib.request

import pytest
import yaml

from infra.kafka.broker import free_port
from pipeline_lib.prometheus import PrometheusListener
from pipeline_lib.reports import BatchReport
from tests.helpers import ROOT


@pytest.fixture
def listener():
    served = PrometheusListener(free_port())
    yield served
    served.close()


def scrape(listener):
    port = listener._server.server_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def samples(text):
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"}


def test_batch_reports_add_up_in_the_counters(listener):
    violations = {"expectation 'positive' (drop) violations": 2}
    listener.on_batch(BatchReport(0, rows_read=10, written=8, quarantined=2, seconds=0.3, offsets_behind_latest=40))
    listener.on_batch(BatchReport(1, rows_read=5, written=3, quarantined=0, seconds=0.2, metrics=violations, offsets_behind_latest=0))

    served = samples(scrape(listener))

    assert (served["pipeline_rows_read_total"], served["pipeline_rows_written_total"]) == (15, 11)
    assert (served["pipeline_rows_quarantined_total"], served["pipeline_batches_total"]) == (2, 2)
    assert served['pipeline_expectation_violations_total{expectation="positive",on_violation="drop"}'] == 2
    assert (served["pipeline_kafka_offsets_behind_latest"], served["pipeline_last_batch_id"]) == (0, 1)
    assert served["pipeline_batch_duration_seconds_count"] == 2


def test_a_batch_written_before_a_restart_counts_nothing(listener):
    listener.on_batch(BatchReport(4, skipped=True))

    assert samples(scrape(listener))["pipeline_batches_total"] == 0


def test_every_metric_the_operations_page_names_is_served(listener):
    listener.on_batch(BatchReport(0, rows_read=1, written=1, metrics={"expectation 'x' (warn) violations": 1}))
    served = {re.split(r"[{ ]", line)[0] for line in scrape(listener).splitlines() if line and line[0] != "#"}
    page = (ROOT / "docs" / "operations.md").read_text()
    rules = yaml.safe_load(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))

    named = set(re.findall(r"`(pipeline_[a-z_]+)[`{]", page))
    in_rules = {name for rule in rules["groups"][0]["rules"] for name in re.findall(r"pipeline_[a-z_]+", rule["expr"])}
    histogram = {"pipeline_batch_duration_seconds"}
    assert named - histogram <= served and in_rules <= served
    assert {f"{name}_count" for name in histogram} <= served
