"""Write the benchmark tables of docs/benchmarks.md from bench/results.json, between its
markers; nothing else of the page changes.

    python bench/readme_table.py [--results bench/results.json] [--readme docs/benchmarks.md] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_suite import (  # noqa: E402
    LATENCY_RATIO_KEY,
    MEMORY_KEY,
    PRODUCER_LABELS,
    RATIO_KEYS,
    RTM_KEYS,
    STREAM_LABELS,
    TIMERS,
    timer_key,
)

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


def with_range(figures: Optional[Dict[str, Any]], digits: int, median: str = "median", spread: str = "range") -> str:
    """``median (lowest-highest)`` of a figure's rounds (``lowest to highest`` when below zero)."""
    if not figures or figures.get(median) is None:
        return "-"
    low, high = figures[spread]
    between = " to " if low < 0 else "-"
    return f"{number(figures[median], digits)} ({number(low, digits)}{between}{number(high, digits)})"


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(results: Dict[str, Any]) -> str:
    machine, versions = results["machine"], results["versions"]
    sizes = results["settings"]["sizes"]
    at = results["ratio_records"]
    load = results.get("load_average", {})
    busy = (
        f" The machine's load average (1, 5, 15 minutes) was {', '.join(f'{v:.1f}' for v in load['start'])} at the start "
        f"and {', '.join(f'{v:.1f}' for v in load['end'])} at the end."
        if load
        else ""
    )
    lines = [
        f"Measured by `make bench` on {results['date'][:10]} ({results['date']}), on {machine['cores']} cores "
        f"({machine['cpu']}) and {machine['memory_gib']:g} GiB; Spark {versions['spark']}, Kafka {versions['kafka']}, "
        f"kafka-python {versions['kafka_python']}, confluent-kafka {versions['confluent_kafka']} "
        f"(librdkafka {versions['librdkafka']}); {results['settings']['partitions']} partitions; "
        f"{results['repeats']} rounds of every comparison; the whole run took {results['bench_seconds'] / 60:.1f} minutes.{busy}",
        "",
        "Ratios (ours / theirs), the median of the rounds' own ratios (lowest-highest):",
        "",
    ]
    targets = results.get("targets", {})
    by_size = results.get("ratios", {})
    rows = []
    for key, (section, *_) in RATIO_KEYS.items():
        for index, timer in enumerate(TIMERS[section]):
            name = key if index == 0 else timer_key(key, timer)
            target = targets.get(name)
            cells = [with_range(by_size.get(str(size), {}).get(name), 2) for size in sizes]
            rows.append([f"`{name}`", timer, *cells, target or "-", met(results.get(name), target)])
    memory = [with_range(by_size.get(str(size), {}).get(MEMORY_KEY), 1) for size in sizes]
    rows.append([f"`{MEMORY_KEY}`", "peak RSS, MB", *memory, targets.get(MEMORY_KEY, "-"), met(results.get(MEMORY_KEY), targets.get(MEMORY_KEY))])
    latency_cells = ["-"] * (len(sizes) - 1) + [number(results.get(LATENCY_RATIO_KEY), 2)]
    latency_target = targets.get(LATENCY_RATIO_KEY)
    rows.append([f"`{LATENCY_RATIO_KEY}`", "one run", *latency_cells, latency_target or "-", met(results.get(LATENCY_RATIO_KEY), latency_target)])
    for key in RTM_KEYS:
        figure = {"median": results[key], "range": results[f"{key}_range"]} if results.get(key) is not None else None
        cells = ["-"] * (len(sizes) - 1) + [with_range(figure, 0)]
        rows.append([f"`{key}`", "p99 ms, Kafka to Kafka", *cells, targets.get(key, "-"), met(results.get(key), targets.get(key))])
    lines += table(["ratio", "timer", *[f"N = {size:,}" for size in sizes], "target", f"at N = {at:,}"], rows)

    def throughput(section: str, name: str, size: int) -> str:
        figures = results.get(section, {}).get(str(size), {}).get(name)
        return with_range(figures, 0, "records_per_s", "records_per_s_range")

    share = results["settings"].get("malformed_share", 0)
    lines += [
        "",
        f"Stream throughput, records/s, median (lowest-highest), by the query's own clock (available-now; "
        f"{share:.0%} of the records malformed):",
        "",
    ]
    stream_rows = [[label, *[throughput("stream", name, size) for size in sizes]] for name, label in STREAM_LABELS.items()]
    stream_rows += [
        [f"{STREAM_LABELS[name]}, no malformed records", *[throughput("stream_clean", name, size) for size in sizes]]
        for name in ("pipeline", "naive_job")
    ]
    lines += table(["", *[f"N = {size:,}" for size in sizes]], stream_rows)
    lines += [
        "",
        "Producer throughput, records/s, median (lowest-highest), in the producer's process from the call to "
        "the last acknowledgement; its peak RSS, MB:",
        "",
    ]
    producer_rows = [[label, *[throughput("producer", name, size) for size in sizes]] for name, label in PRODUCER_LABELS.items()]
    for name, label in PRODUCER_LABELS.items():
        peaks = []
        for size in sizes:
            runs = results["producer"].get(str(size), {}).get(name, {}).get("runs") or []
            values = [run["peak_rss_mb"] for run in runs]
            peaks.append(with_range({"median": statistics.median(values), "range": [min(values), max(values)]}, 0) if values else "-")
        producer_rows.append([f"{label}: peak RSS", *peaks])
    lines += table(["", *[f"N = {size:,}" for size in sizes]], producer_rows)
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
        raise SystemExit(f"the page has no {START} ... {END} markers")
    return readme[: start + len(START)] + "\n" + body + "\n" + readme[end:]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "benchmarks.md"), help="the page with the markers")
    parser.add_argument("--check", action="store_true", help="print the tables, change nothing")
    args = parser.parse_args(argv)
    body = render(json.loads(Path(args.results).read_text()))
    if args.check:
        print(body)
        return 0
    readme = Path(args.readme)
    # Read, replace and rename at once: other sections may be edited by others meanwhile.
    text = replace_between_markers(readme.read_text(), body)
    handle, temporary = tempfile.mkstemp(dir=readme.parent, prefix=".benchmarks.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(temporary, readme.stat().st_mode & 0o777)
    os.replace(temporary, readme)
    print(f"wrote the benchmark tables of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
