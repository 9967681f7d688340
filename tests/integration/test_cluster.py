"""spark-submit to a real standalone cluster (master + worker on loopback), as the compose stack
does: executors find pipeline_lib only through --py-files dist/pipeline_lib.zip."""

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request

import pytest

from infra.kafka.broker import free_port
from tests.helpers import ROOT, SPARK_SUBMIT, job, spark_submit

SPARK_CLASS = SPARK_SUBMIT.parent / "spark-class"

EXECUTOR_PROBE = '''
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()

def where_is_pipeline_lib(_):
    import pipeline_lib
    yield pipeline_lib.__file__

print("executor imported", spark.sparkContext.parallelize([0], 1).mapPartitions(where_is_pipeline_lib).collect()[0])
'''


def start(command, log):
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_worker(ui_port, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5).read())
            if state.get("aliveworkers", 0) >= 1:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError("the Spark worker did not register with the master")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and one worker from the installed pyspark; stopped by pid at the end."""
    logs = tmp_path_factory.mktemp("spark-cluster")
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env_log = open(logs / "cluster.log", "ab")
    processes = [
        start([str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
               "--port", str(port), "--webui-port", str(ui_port)], env_log),
    ]
    try:
        time.sleep(2)
        processes.append(
            start([str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                   "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                   "--work-dir", str(logs / "work")], env_log)
        )
        wait_for_worker(ui_port)
        yield master_url
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        env_log.close()


@pytest.fixture(scope="module")
def zip_only_python(tmp_path_factory):
    """A Python for the executors that has pyspark and friends but not this checkout's editable
    install: -S skips site-packages' .pth files, PYTHONPATH adds the libraries back."""
    wrapper = tmp_path_factory.mktemp("python") / "python-without-project"
    site_packages = sysconfig.get_paths()["purelib"]
    wrapper.write_text(
        "#!/bin/sh\n"
        f'export PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site_packages}"\n'
        f'exec "{sys.executable}" -S "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_executor_python_cannot_import_the_library_without_the_zip(zip_only_python, tmp_path):
    result = subprocess.run([zip_only_python, "-c", "import pipeline_lib"], capture_output=True, text=True, cwd=tmp_path)

    assert result.returncode != 0 and "No module named 'pipeline_lib'" in result.stderr


def test_executors_import_the_library_from_the_zip(cluster, zip_only_python, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(EXECUTOR_PROBE)

    result = spark_submit(script, master=cluster, env={"PYSPARK_PYTHON": zip_only_python}, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "pipeline_lib.zip/pipeline_lib/__init__.py" in result.stdout


def test_stream_job_runs_on_the_cluster(cluster, zip_only_python, spark, bootstrap, topic, tmp_path):
    assert job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "20").returncode == 0

    result = spark_submit(
        ROOT / "jobs" / "stream.py",
        "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(tmp_path / "output"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"),
        master=cluster, env={"PYSPARK_PYTHON": zip_only_python}, cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 20 rows written, 0 quarantined" in result.stdout
    output = spark.read.option("header", "true").csv(str(tmp_path / "output"))
    assert sorted(int(row["id"]) for row in output.collect()) == list(range(1, 21))
