"""The benchmark suite runs end to end at N = 20 and writes every key (no timing is checked)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest.importorskip("confluent_kafka", reason="the bench extra: make bench-install")
pytest.importorskip("matplotlib", reason="the bench extra: make bench-install")

from bench.bench_suite import LATENCY_RATIO_KEY, PRODUCER_LABELS, RATIO_KEYS, STREAM_LABELS  # noqa: E402
from bench.readme_table import render  # noqa: E402

pytestmark = pytest.mark.slow


def test_bench_writes_every_key(tmp_path):
    out = tmp_path / "results" / "results.json"
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "bench_suite.py"), "--sizes", "20",
            "--latency-seconds", "3", "--latency-rate", "200", "--out", str(out), "--work", str(tmp_path / "work"),
        ],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())

    for key in [*RATIO_KEYS, LATENCY_RATIO_KEY]:
        assert isinstance(results[key], float), key
    assert results["ratio_records"] == 20
    assert results["machine"]["cores"] >= 1 and results["machine"]["memory_gib"] > 0
    assert all(results["versions"][name] for name in ("spark", "kafka", "kafka_python", "confluent_kafka"))
    for name in STREAM_LABELS:
        assert results["stream"]["20"][name]["rows"] == 20
        assert results["stream"]["20"][name]["records_per_s"] > 0
    for name in PRODUCER_LABELS:
        assert results["producer"]["20"][name]["records_per_s"] > 0
    latency = results["latency"]
    assert latency["records_measured"] == latency["records_sent"] == 600
    assert all(latency[key] is not None for key in ("p50_s", "p95_s", "p99_s"))
    assert latency["batches"] and "addBatch" in latency["spark_duration_ms"]
    assert results["memory"]["peak_rss_mb"]["driver_jvm"] > 0 and results["memory"]["peak_rss_mb"]["python_driver"] > 0
    assert results["files_per_million_records"]["pipeline"]["20"] > 0
    assert results["demo"]["exit_code"] == 0
    assert all(results["demo"]["steps_s"][step] is not None for step in ("broker", "produce", "spark_start", "batch"))
    assert set(results["demo"]["steps_s"]) >= {"venv", "jars", "broker", "produce", "spark_start", "batch"}
    for chart in ("throughput.png", "latency.png"):
        assert (out.parent / chart).stat().st_size > 10_000
    assert "`stream_vs_naive_ratio`" in render(results)
