"""A long run: thousands of micro-batches through the pipeline at a short trigger, sampling
every --every batches what must stay flat however long the query runs.

    make soak                                            # 2,000 batches, processing-time=200ms
    python bench/soak.py --batches 30 --every 10 --out /tmp/soak/results.json

A broker of its own (a free loopback port), one local SparkSession, and jobs/produce.py at a
steady --rate in a process of its own, so that every batch has rows. The pipeline runs as
``run_pipeline`` runs it for jobs/stream.py; a :class:`~pipeline_lib.reports.Listener` takes
each batch's report (its write time) and, every --every batches, samples the output folder
(published files, the ledger's ``_batches`` and the ``_publishing`` lists), the checkpoint
(bytes on disk and files, per folder) and the driver's memory (RSS of the JVM and of Python).

Two figures come out of it: the median write time of the last 500 batches over that of the
first 500, and the checkpoint's size at the end over its size at batch 500 (with fewer than
1,000 batches: halves of the run, and the first sample from its middle on). The series go into
the ``soak`` key of results.json (the other keys are kept) and the chart soak.png beside it.
"""

from __future__ import annotations

import argparse
import csv
import gc
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_JARS", str(ROOT / "infra" / "spark" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from infra.kafka.broker import LocalKafka, free_port  # noqa: E402
from pipeline_lib.reports import BatchReport, Listener  # noqa: E402

WINDOW = 500  # batches at each end of the run compared for the write time
REFERENCE_BATCH = 500  # the checkpoint's size at the end is compared with its size here
TARGETS = {"write_time_ratio": "<= 1.2", "checkpoint_growth_ratio": "<= 1.2"}
LIMIT = 1.2
TOPIC = "soak"


def say(line: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {line}", flush=True)


def rss_mb(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def usage(path: Path) -> Dict[str, int]:
    """Files (checksums included), apparent bytes and bytes allocated on disk under ``path``."""
    files = size = disk = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                stat = os.stat(os.path.join(folder, name))
            except FileNotFoundError:  # removed by the running batch meanwhile
                continue
            files += 1
            size += stat.st_size
            disk += stat.st_blocks * 512
    return {"files": files, "bytes": size, "disk_bytes": disk}


def entries(path: Path) -> int:
    """Names in ``path`` less Hadoop's hidden ``.N.crc`` checksums: the ledger's marks, the lists."""
    try:
        return sum(1 for name in os.listdir(path) if not name.startswith("."))
    except FileNotFoundError:
        return 0


class Sampler(Listener):
    """Each batch's write time; every ``every`` batches, a sample of the folders and memory;
    ``stop`` set once ``batches`` batches were reported."""

    def __init__(self, work: Path, batches: int, every: int, jvm: Any, stop: threading.Event):
        self.work = work
        self.batches = batches
        self.every = every
        self.jvm = jvm
        self.jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
        self.stop = stop
        self.started = time.monotonic()
        self.reports: List[BatchReport] = []
        self.samples: List[Dict[str, Any]] = []
        self.skipped = 0

    def on_batch(self, report: BatchReport) -> None:
        if len(self.reports) >= self.batches:
            return  # a batch that began before the stop
        if report.skipped:
            self.skipped += 1
        self.reports.append(report)
        count = len(self.reports)
        if count % self.every == 0 or count == self.batches:
            self.samples.append(self.sample(count))
            latest = self.samples[-1]
            say(
                f"batch {count}: write {latest['write_s_median']:.3f}s (median of the last {self.every}), "
                f"checkpoint {latest['checkpoint']['disk_bytes'] / 1024:.0f} KiB, "
                f"JVM {latest['jvm_rss_mb']} MB, Python {latest['python_rss_mb']} MB"
            )
        if count >= self.batches:
            self.stop.set()

    def sample(self, count: int) -> Dict[str, Any]:
        recent = [report.seconds for report in self.reports[-self.every :]]
        checkpoint = self.work / "checkpoint"
        output, quarantine = self.work / "output", self.work / "quarantine"
        runtime = self.jvm.java.lang.Runtime.getRuntime()
        return {
            "batch": count,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "rows_written": sum(report.written or 0 for report in self.reports),
            "output_files": len(glob.glob(str(output / "batch-*.csv"))),
            "output": usage(output),
            "ledger_entries": entries(output / "_batches"),
            "publishing_entries": entries(output / "_publishing"),
            "quarantine_ledger_entries": entries(quarantine / "_batches"),
            "quarantine_publishing_entries": entries(quarantine / "_publishing"),
            "checkpoint": usage(checkpoint),
            "checkpoint_folders": {path.name: usage(path) for path in sorted(checkpoint.iterdir()) if path.is_dir()},
            "write_s_median": round(statistics.median(recent), 4),
            "write_s_max": round(max(recent), 4),
            "jvm_rss_mb": rss_mb(self.jvm_pid),
            "jvm_heap_used_mb": round((runtime.totalMemory() - runtime.freeMemory()) / 2**20, 1),
            "python_rss_mb": rss_mb(os.getpid()),
            "python_objects": len(gc.get_objects()),
            # Other runs share the machine: a slower stretch of batches may be theirs.
            "load_1m": round(os.getloadavg()[0], 2),
        }


def figures(write_seconds: List[float], samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The two ratios and what they compare (halves of the run and its middle when it is short)."""
    window = min(WINDOW, len(write_seconds) // 2)
    first, last = statistics.median(write_seconds[:window]), statistics.median(write_seconds[-window:])
    reference_batch = min(REFERENCE_BATCH, samples[-1]["batch"] // 2)
    reference = next(sample for sample in samples if sample["batch"] >= reference_batch)
    start, end = reference["checkpoint"]["disk_bytes"], samples[-1]["checkpoint"]["disk_bytes"]
    result: Dict[str, Any] = {
        "write_time_ratio": round(last / first, 3),
        "write_time_window_batches": window,
        "write_s_median_first": round(first, 4),
        "write_s_median_last": round(last, 4),
        "checkpoint_growth_ratio": round(end / start, 3),
        "checkpoint_reference_batch": reference["batch"],
        "checkpoint_disk_bytes_reference": start,
        "checkpoint_disk_bytes_end": end,
        "targets": TARGETS,
    }
    result["met"] = {key: result[key] <= LIMIT for key in TARGETS}
    return result


def published_ids(output: Path) -> List[int]:
    ids: List[int] = []
    for path in sorted(glob.glob(str(output / "batch-*.csv"))):
        with open(path, newline="") as handle:
            ids += [int(row["id"]) for row in csv.DictReader(handle)]
    return ids


def soak(spark: Any, bootstrap: str, work: Path, args: argparse.Namespace) -> Dict[str, Any]:
    from pipeline_lib.kafka_client import KafkaSettings, ensure_topic
    from pipeline_lib.pipeline import load_pipeline_config
    from pipeline_lib.run import run_pipeline

    ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=TOPIC), args.partitions, 30)
    config = load_pipeline_config(
        overrides={
            "kafka.bootstrap_servers": bootstrap,
            "kafka.topic": TOPIC,
            "output.path": str(work / "output"),
            "quarantine.path": str(work / "quarantine"),
            "checkpoint": str(work / "checkpoint"),
            "trigger": args.trigger,
        },
        environ={},
    )
    stop = threading.Event()
    sampler = Sampler(work, args.batches, args.every, spark.sparkContext._jvm, stop)
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = run_pipeline(
                spark, config, emit=lambda line: None, stop_event=stop, listeners=[sampler]
            )
        except Exception as error:  # noqa: BLE001 (raised again by the main thread)
            outcome["error"] = error

    # Enough records for the longest run allowed; the producer is stopped once the run is done.
    count = int(args.rate * args.timeout_minutes * 60) + 1000
    producer = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "produce.py"),
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            TOPIC,
            "--count",
            str(count),
            "--rate",
            f"{args.rate:g}",
            "--start-id",
            "1",
            "--seed",
            "7",
            "--timeout",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    thread = threading.Thread(target=run, name="soak-pipeline", daemon=True)
    try:
        thread.start()
        thread.join(args.timeout_minutes * 60)
    finally:
        stop.set()
        thread.join(120)
        producer.terminate()
        producer.wait(30)
    if "error" in outcome:
        raise outcome["error"]
    if len(sampler.reports) < args.batches:
        raise RuntimeError(
            f"{len(sampler.reports)} of {args.batches} batches in {args.timeout_minutes:g} minutes"
            + (f"; the producer: {producer.stderr.read().strip()}" if producer.stderr else "")
        )
    write_seconds = [round(report.seconds, 4) for report in sampler.reports]
    ids = published_ids(work / "output")
    written = outcome["summary"].written
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "batches": args.batches,
            "every": args.every,
            "trigger": args.trigger,
            "rate_records_per_s": args.rate,
            "partitions": args.partitions,
            "spark_master": spark.sparkContext.master,
            "spark_conf": dict(args.conf),
        },
        "seconds": round(time.monotonic() - started, 1),
        "rows_written": written,
        "rows_per_batch_min": min(report.rows_read for report in sampler.reports),
        "skipped_batches": sampler.skipped,
        "ids_once": len(ids) == len(set(ids)) == written,
        **figures(write_seconds, sampler.samples),
        "samples": sampler.samples,
        "write_seconds": write_seconds,
    }


def chart(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    x = [sample["batch"] for sample in samples]
    figure, axes = plt.subplots(2, 2, figsize=(14, 9))
    write, checkpoint, folders, memory = axes.flat
    write.plot(
        range(1, len(result["write_seconds"]) + 1),
        result["write_seconds"],
        ".",
        markersize=2,
        color="grey",
        label="each batch",
    )
    write.plot(
        x,
        [sample["write_s_median"] for sample in samples],
        marker="o",
        color="black",
        label=f"median of each {result['settings']['every']} batches",
    )
    # The first batches (a cold JVM) would flatten the rest: the scale stops at the 99th percentile.
    write.set_ylim(0, statistics.quantiles(result["write_seconds"], n=100)[-1] * 1.5)
    write.set_title(
        f"write time per batch (last/first {result['write_time_window_batches']}: {result['write_time_ratio']:.2f})",
        fontsize=11,
    )
    write.set_ylabel("seconds")
    write.legend(fontsize=8)
    checkpoint.plot(
        x, [sample["checkpoint"]["disk_bytes"] / 1024 for sample in samples], marker="o", label="KiB on disk"
    )
    checkpoint.plot(x, [sample["checkpoint"]["files"] for sample in samples], marker="s", label="files")
    checkpoint.set_title(
        f"checkpoint (end/batch {result['checkpoint_reference_batch']}: {result['checkpoint_growth_ratio']:.2f})",
        fontsize=11,
    )
    checkpoint.legend(fontsize=8)
    for key, label in (
        ("ledger_entries", "output _batches"),
        ("publishing_entries", "output _publishing"),
        ("quarantine_ledger_entries", "quarantine _batches"),
    ):
        folders.plot(x, [sample[key] for sample in samples], marker=".", label=label)
    folders.set_title("entries of the sinks' bookkeeping folders", fontsize=11)
    published = folders.twinx()
    published.plot(
        x,
        [sample["output_files"] for sample in samples],
        color="black",
        linestyle="--",
        label="published files (right axis)",
    )
    published.legend(fontsize=8, loc="lower right")
    folders.legend(fontsize=8, loc="upper left")
    for key, label in (
        ("jvm_rss_mb", "driver JVM RSS"),
        ("jvm_heap_used_mb", "JVM heap in use"),
        ("python_rss_mb", "Python driver RSS"),
    ):
        memory.plot(x, [sample[key] for sample in samples], marker=".", label=label)
    memory.set_title("driver memory (MB)", fontsize=11)
    memory.set_ylim(bottom=0)
    memory.legend(fontsize=8)
    for axis in axes.flat:
        axis.set_xlabel("batches")
        axis.grid(True, alpha=0.3)
    settings = result["settings"]
    figure.suptitle(
        f"Soak: {settings['batches']:,} batches, {settings['trigger']}, {settings['rate_records_per_s']:g} "
        f"records/s, {result['seconds'] / 60:.1f} minutes ({result['date'][:10]})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def merge(out: Path, result: Dict[str, Any]) -> None:
    """``result`` as the ``soak`` key of ``out``, its other keys as they were."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results["soak"] = result
    out.write_text(json.dumps(results, indent=2) + "\n")


def quiet_falling_behind(spark: Any) -> None:
    """A trigger shorter than a batch is the point here: Spark's warning that the batch fell
    behind it would come once a batch."""
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor",
        jvm.org.apache.logging.log4j.Level.ERROR,
    )


def conf_pair(text: str) -> tuple:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000, help="micro-batches to run (default %(default)s)")
    parser.add_argument("--every", type=int, default=100, help="a sample every N batches (default %(default)s)")
    parser.add_argument("--trigger", default="processing-time=200ms")
    parser.add_argument("--rate", type=float, default=50.0, help="records/s of the producer (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--conf",
        type=conf_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting of the session (repeatable)",
    )
    parser.add_argument("--timeout-minutes", type=float, default=90.0, help="the run fails past this")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="results.json; soak.png beside it")
    parser.add_argument("--work", help="scratch folder (default: a new temporary one, removed at the end)")
    args = parser.parse_args(argv)
    if args.batches < 2 or args.every < 1:
        parser.error("--batches: 2 or more; --every: 1 or more")
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="soak-")).resolve()
    work.mkdir(parents=True, exist_ok=True)

    from pipeline_lib.session import get_spark

    broker = LocalKafka(work / "kafka", port=free_port())
    say(f"starting a broker on {broker.bootstrap_servers}")
    broker.start()
    try:
        spark = get_spark("soak", conf={"spark.ui.enabled": "false", **dict(args.conf)})
        quiet_falling_behind(spark)
        say(f"{args.batches} batches, {args.trigger}, {args.rate:g} records/s")
        result = soak(spark, broker.bootstrap_servers, work, args)
        spark.stop()
    finally:
        broker.stop()
    merge(out, result)
    chart(result, out.parent / "soak.png")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote the soak key of {out} and {out.parent / 'soak.png'} in {result['seconds'] / 60:.1f} minutes")
    for key, target in TARGETS.items():
        say(f"{key} = {result[key]} (target {target}): {'met' if result['met'][key] else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
