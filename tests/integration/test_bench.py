"""The benchmark suite runs end to end at N = 20 and writes every key, each figure the median of
its rounds with their range (no timing is checked)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest.importorskip("confluent_kafka", reason="the bench extra: make bench-install")
pytest.importorskip("matplotlib", reason="the bench extra: make bench-install")

from bench.bench_suite import (  # noqa: E402
    CLEAN_SIDES,
    DEMO_STEPS,
    LATENCY_RATIO_KEY,
    MADE_STEPS,
    PRODUCER_LABELS,
    RTM_KEYS,
    STREAM_LABELS,
    ratio_keys,
)
from bench.readme_table import render  # noqa: E402

pytestmark = pytest.mark.slow


def test_bench_writes_every_key(tmp_path):
    out = tmp_path / "results" / "results.json"
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "bench_suite.py"), "--sizes", "20",
            "--latency-seconds", "2", "--latency-rate", "200", "--rtm-count", "120", "--rtm-rate", "200",
            "--rtm-warm-up", "20", "--skip-demo", "--out", str(out), "--work", str(tmp_path / "work"),
        ],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())

    repeats = results["repeats"]
    assert repeats >= 3
    for key in ratio_keys():
        low, high = results[f"{key}_range"]
        assert isinstance(results[key], float) and low <= results[key] <= high, key
        assert results["ratios"]["20"][key]["median"] == results[key], key
        assert len(results["ratios"]["20"][key]["rounds"]) == repeats, key
    assert isinstance(results[LATENCY_RATIO_KEY], float)
    for key, variant in RTM_KEYS.items():
        low, high = results[f"{key}_range"]
        assert 0 < low <= results[key] <= high, key
        assert len(results["latency_realtime"]["variants"][variant]["runs"]) == repeats, key
        assert all(run["received"] == 120 for run in results["latency_realtime"]["variants"][variant]["runs"])
        for run in results["latency_realtime"]["variants"][variant]["runs"]:
            assert run["jvm_gc_ms"] >= 0 and run["python_gc_ms"] >= 0 and isinstance(run["stalls_after_warm_up"], list)
    assert results["ratio_records"] == 20
    assert results["machine"]["cores"] >= 1 and results["machine"]["memory_gib"] > 0
    assert all(results["versions"][name] for name in ("spark", "kafka", "kafka_python", "confluent_kafka"))
    assert results["workload"]["20"] == {"records": 20, "malformed": 1}
    for section, names in (("stream", STREAM_LABELS), ("stream_clean", CLEAN_SIDES), ("producer", PRODUCER_LABELS)):
        for name in names:
            figures = results[section]["20"][name]
            low, high = figures["records_per_s_range"]
            assert 0 < low <= figures["records_per_s"] <= high, (section, name)
            assert len(figures["runs"]) == repeats, (section, name)
    assert results["stream"]["20"]["pipeline"]["rows"] == 20
    assert (results["stream"]["20"]["pipeline"]["written"], results["stream"]["20"]["pipeline"]["rejected"]) == (19, 1)
    assert results["stream_clean"]["20"]["pipeline"]["written"] == 20
    assert all(run["peak_rss_mb"] > 0 for run in results["producer"]["20"]["project"]["runs"])
    assert all(run["driver_jvm_gc_ms"] >= 0 for name in STREAM_LABELS for run in results["stream"]["20"][name]["runs"])
    latency = results["latency"]
    assert latency["records_measured"] == latency["records_sent"] == 400
    assert all(latency[key] is not None for key in ("p50_s", "p95_s", "p99_s"))
    assert latency["batches"] and "addBatch" in latency["spark_duration_ms"]
    assert results["memory"]["peak_rss_mb"]["driver_jvm"] > 0 and results["memory"]["peak_rss_mb"]["python_driver"] > 0
    assert results["files_per_million_records"]["pipeline"]["20"] > 0
    assert set(results["demo"]["steps_s"]) == set(MADE_STEPS + DEMO_STEPS)  # make demo's timing: test_getting_started
    for chart in ("throughput.png", "latency.png"):
        assert (out.parent / chart).stat().st_size > 10_000
    assert "`rtm_latency_p99_ms`" in render(results)
    assert "`stream_vs_naive_ratio`" in render(results) and "`producer_peak_rss_vs_naive_mb`" in render(results)
