"""``--metrics-port`` serves the running job's figures in Prometheus' text format, scraped here
with a real HTTP client while a processing-time job runs."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from infra.kafka.broker import free_port
from tests.conftest import send_raw
from tests.helpers import ROOT, job
from tests.integration.test_faults import kill_group
from tests.integration.test_pipeline import produce


def scrape(port):
    """The samples of one scrape, by name with their labels: {"name{labels}": value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.slow
def test_the_running_jobs_counters_match_the_rows_sent(bootstrap, topic, tmp_path):
    produce(bootstrap, topic, 30)
    send_raw(bootstrap, topic, [b"not json", json.dumps({"id": 99, "value": 500}).encode()])
    port = free_port()
    command = [
        sys.executable, str(ROOT / "jobs" / "stream.py"), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--output", str(tmp_path / "output"), "--checkpoint", str(tmp_path / "checkpoint"),
        "--quarantine", str(tmp_path / "quarantine"), "--trigger", "processing-time=1s", "--metrics-port", str(port),
        "--config", str(_with_expectation(tmp_path)),
    ]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                               start_new_session=True)
    samples = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if samples.get("pipeline_rows_written_total", 0) + samples.get("pipeline_rows_quarantined_total", 0) >= 32:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            kill_group(process)

    assert process.returncode == 0, stderr[-3000:]
    assert samples["pipeline_rows_read_total"] == 32
    assert samples["pipeline_rows_written_total"] == 30
    assert samples["pipeline_rows_quarantined_total"] == 2
    assert samples['pipeline_expectation_violations_total{expectation="small",on_violation="quarantine"}'] == 1
    assert samples["pipeline_batches_total"] >= 1
    assert samples["pipeline_batch_duration_seconds_count"] == samples["pipeline_batches_total"]
    assert samples["pipeline_kafka_offsets_behind_latest"] == 0
    assert "done: 30 rows written, 2 quarantined" in stdout


def _with_expectation(tmp_path):
    path = tmp_path / "pipeline.yml"
    path.write_text(
        "transforms:\n  - add_processed_value\n"
        "  - {name: expect, options: {name: small, condition: value <= 100, on_violation: quarantine}}\n"
    )
    return path


def test_a_taken_metrics_port_is_refused_in_one_line(bootstrap, topic, tmp_path):
    import socket

    produce(bootstrap, topic, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = job(
            "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "o"),
            "--checkpoint", str(tmp_path / "c"), "--quarantine", str(tmp_path / "q"), "--metrics-port", str(port),
            timeout=120,
        )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --metrics-port: cannot serve on 127.0.0.1:{port}: Address already in use"]
