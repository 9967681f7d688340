"""The soak (bench/soak.py) end to end on a tiny run: its series, its figures, its chart, and the
other keys of results.json kept (no timing is checked)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest.importorskip("matplotlib", reason="the bench extra: make bench-install")

pytestmark = pytest.mark.slow

SAMPLE_KEYS = {
    "batch", "elapsed_s", "rows_written", "output_files", "output", "ledger_entries", "publishing_entries",
    "quarantine_ledger_entries", "quarantine_publishing_entries", "checkpoint", "checkpoint_folders",
    "write_s_median", "write_s_max", "jvm_rss_mb", "jvm_heap_used_mb", "python_rss_mb", "python_objects", "load_1m",
}


def test_soak_of_thirty_batches_writes_a_sample_every_ten_beside_the_other_keys(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"stream_vs_naive_ratio": 0.95}))

    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--batches", "30", "--every", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["stream_vs_naive_ratio"] == 0.95
    soak = results["soak"]
    assert [sample["batch"] for sample in soak["samples"]] == [10, 20, 30]
    assert all(set(sample) == SAMPLE_KEYS for sample in soak["samples"])
    assert len(soak["write_seconds"]) == 30 and all(seconds > 0 for seconds in soak["write_seconds"])
    assert soak["rows_per_batch_min"] > 0 and soak["skipped_batches"] == 0 and soak["ids_once"]
    assert soak["write_time_window_batches"] == 15 and soak["checkpoint_reference_batch"] == 20
    for key in ("write_time_ratio", "checkpoint_growth_ratio"):
        assert isinstance(soak[key], float) and soak[key] > 0 and isinstance(soak["met"][key], bool)
    last = soak["samples"][-1]
    # Sampled when batch 30 is reported; the next may have published already.
    assert all(30 <= last[key] <= 31 for key in ("output_files", "ledger_entries", "publishing_entries"))
    assert {"offsets", "commits"} <= set(last["checkpoint_folders"])
    assert last["jvm_rss_mb"] > 0 and last["python_rss_mb"] > 0
    assert (tmp_path / "soak.png").stat().st_size > 10_000
