"""Write the README's benchmark tables from bench/results.json, between the markers of its
"## Benchmark" section; nothing else of the README changes.

    python bench/readme_table.py [--results bench/results.json] [--readme README.md] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_suite import LATENCY_RATIO_KEY, PRODUCER_LABELS, RATIO_KEYS, STREAM_LABELS  # noqa: E402

START = "<!-- bench-table:start (bench/readme_table.py writes this part from bench/results.json) -->"
END = "<!-- bench-table:end -->"


def number(value: Optional[float], digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def met(value: Optional[float], target: Optional[str]) -> str:
    if value is None or not target:
        return ""
    operator, _, bound = target.partition(" ")
    ok = value >= float(bound) if operator == ">=" else value <= float(bound)
    return "met" if ok else "missed"


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(results: Dict[str, Any]) -> str:
    machine, versions = results["machine"], results["versions"]
    sizes = results["settings"]["sizes"]
    at = results["ratio_records"]
    lines = [
        f"Measured by `make bench` on {results['date'][:10]} ({results['date']}), on {machine['cores']} cores "
        f"({machine['cpu']}) and {machine['memory_gib']:g} GiB; Spark {versions['spark']}, Kafka {versions['kafka']}, "
        f"kafka-python {versions['kafka_python']}, confluent-kafka {versions['confluent_kafka']} "
        f"(librdkafka {versions['librdkafka']}); {results['settings']['partitions']} partitions; "
        f"the whole run took {results['bench_seconds'] / 60:.1f} minutes.",
        "",
        f"Ratios (ours / theirs), at N = {at:,}:",
        "",
    ]
    targets = results.get("targets", {})
    rows = []
    for key in [*RATIO_KEYS, LATENCY_RATIO_KEY]:
        rows.append([f"`{key}`", number(results.get(key), 2), targets.get(key, "-"), met(results.get(key), targets.get(key))])
    lines += table(["ratio", "value", "target", ""], rows)

    lines += ["", "Stream throughput, records/s (first offset to last row committed, available-now):", ""]
    lines += table(
        ["", *[f"N = {size:,}" for size in sizes]],
        [
            [label, *[number(results["stream"].get(str(size), {}).get(name, {}).get("records_per_s")) for size in sizes]]
            for name, label in STREAM_LABELS.items()
        ],
    )
    lines += ["", "Producer throughput, records/s (first send to last acknowledgement):", ""]
    lines += table(
        ["", *[f"N = {size:,}" for size in sizes]],
        [
            [label, *[number(results["producer"].get(str(size), {}).get(name, {}).get("records_per_s")) for size in sizes]]
            for name, label in PRODUCER_LABELS.items()
        ],
    )
    latency = results.get("latency", {})
    memory = results.get("memory", {}).get("peak_rss_mb", {})
    pipeline_peak = results["stream"].get(str(at), {}).get("pipeline", {}).get("peak_rss_mb", {})
    files = results.get("files_per_million_records", {})
    demo = results.get("demo", {}).get("steps_s", {})
    spark_ms = latency.get("spark_duration_ms", {})
    add_batch = spark_ms.get("addBatch", {})
    trigger_ms = spark_ms.get("triggerExecution", {})
    lines += ["", "Latency, memory, files, `make demo`:", ""]
    lines += table(
        ["figure", "value"],
        [
            [
                f"latency, record timestamp to batch committed ({latency.get('trigger')}, "
                f"{latency.get('rate_records_per_s', 0):,.0f} records/s for {latency.get('seconds', 0):g} s, "
                f"first {latency.get('warmup_excluded_s', 0):g} s left out)",
                f"p50 {number(latency.get('p50_s'), 2)} s, p95 {number(latency.get('p95_s'), 2)} s, "
                f"p99 {number(latency.get('p99_s'), 2)} s, max {number(latency.get('max_s'), 2)} s",
            ],
            [
                "Spark's own time per batch there (p50 / p95): whole trigger, of which foreachBatch",
                f"{number(trigger_ms.get('p50'))} / {number(trigger_ms.get('p95'))} ms, "
                f"{number(add_batch.get('p50'))} / {number(add_batch.get('p95'))} ms",
            ],
            [
                "peak RSS over the run: driver JVM, Python driver",
                f"{number(memory.get('driver_jvm'))} MB, {number(memory.get('python_driver'))} MB",
            ],
            [
                f"peak RSS during the pipeline's run at N = {at:,}: driver JVM, Python driver",
                f"{number(pipeline_peak.get('driver_jvm'))} MB, {number(pipeline_peak.get('python_driver'))} MB",
            ],
            [
                "files written per 1,000,000 records: pipeline, naive job",
                f"{number(files.get('pipeline', {}).get(str(at)), 1)}, {number(files.get('naive_job', {}).get(str(at)), 1)}",
            ],
            [
                "`make demo`, seconds: venv, jars, broker, produce, Spark start, batch, finish",
                ", ".join(number(demo.get(step), 1) for step in ("venv", "jars", "broker", "produce", "spark_start", "batch", "finish")),
            ],
        ],
    )
    return "\n".join(lines)


def replace_between_markers(readme: str, body: str) -> str:
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README has no {START} ... {END} markers in its ## Benchmark section")
    return readme[: start + len(START)] + "\n" + body + "\n" + readme[end:]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="print the tables, change nothing")
    args = parser.parse_args(argv)
    body = render(json.loads(Path(args.results).read_text()))
    if args.check:
        print(body)
        return 0
    readme = Path(args.readme)
    # Read, replace and rename at once: other sections may be edited by others meanwhile.
    text = replace_between_markers(readme.read_text(), body)
    handle, temporary = tempfile.mkstemp(dir=readme.parent, prefix=".README.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(temporary, readme.stat().st_mode & 0o777)
    os.replace(temporary, readme)
    print(f"wrote the benchmark tables of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
