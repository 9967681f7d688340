"""spark-submit to a real standalone cluster (master + worker on loopback), as the compose stack
does: executors find pipeline_lib only through --py-files dist/pipeline_lib.zip, and they run as
an unprivileged user writing into folders that the driver created.

In the stack, Kestra (the driver) and the worker (the executors) run as one user, kestra, that
owns the shared volume /data. Here the master, the worker and the driver run as `nobody`, which
owns the shared folder; the tests run as root, so a driver left as root reproduces the stack's
old mistake, and a test shows that its executors cannot write then."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pyspark
import pytest

from infra.kafka.broker import free_port
from tests.helpers import ROOT, SPARK_SUBMIT, job, run, spark_submit_command

SPARK_CLASS = SPARK_SUBMIT.parent / "spark-class"
# A standalone master and worker, and spark-submit to them: each test starts JVMs of its own.
pytestmark = pytest.mark.slow

# Given, not searched for: the search runs a Python, which under another user may be another one.
SPARK_HOME = str(Path(pyspark.__file__).parent)

EXECUTOR_PROBE = '''
import json, os, sys
from pyspark.sql import SparkSession

folder = sys.argv[1]
os.umask(0o022)
os.makedirs(folder)  # as a driver creates its output and staging folders
spark = SparkSession.builder.getOrCreate()

def probe(_):
    import os
    import pipeline_lib
    try:
        with open(os.path.join(folder, "part-from-an-executor"), "w") as part:
            part.write("written by an executor\\n")
        written = "ok"
    except PermissionError as error:
        written = f"denied: {error}"
    yield {"uid": os.getuid(), "module": pipeline_lib.__file__, "write": written}

print("executor:", json.dumps(spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()[0]))
spark.stop()
'''


@dataclass
class ClusterUser:
    """Who the cluster runs as, and the command prefix that switches to that user."""

    name: str
    uid: int
    gid: int
    prefix: List[str]

    @property
    def switches(self) -> bool:
        return bool(self.prefix)


@pytest.fixture(scope="module")
def cluster_user() -> ClusterUser:
    """``nobody`` when the tests run as root; otherwise the current, already unprivileged, user.

    The switched processes keep one capability, CAP_DAC_READ_SEARCH: they can read the checkout
    and the virtualenv wherever those live (a home folder closed to others, say), but they write
    only where the user `nobody` may."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return ClusterUser(entry.pw_name, entry.pw_uid, entry.pw_gid, [])
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the worker as an unprivileged user"
    entry = pwd.getpwnam("nobody")
    return ClusterUser(entry.pw_name, entry.pw_uid, entry.pw_gid, [
        setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--",
    ])


@pytest.fixture(scope="module")
def shared(cluster_user) -> Iterator[Path]:
    """The shared data folder (the stack's /data), owned by the cluster's user. Not under
    pytest's own temporary folder: that one is closed to other users, and Java checks paths
    with access(2), which ignores the capability the switched processes keep."""
    folder = Path(tempfile.mkdtemp(prefix="cluster-data-"))
    os.chown(folder, cluster_user.uid, cluster_user.gid)
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start(command, log, env):
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def wait_for_worker(ui_port, timeout=90, workers=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5).read())
            if state.get("aliveworkers", 0) >= workers:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{workers} Spark worker(s) did not register with the master")


@dataclass
class StandaloneCluster:
    """A running master (its URL) and the pids of its workers' processes."""

    master_url: str
    worker_pids: List[int]


@contextmanager
def standalone_cluster(logs: Path, user: ClusterUser, shared: Path, workers: int = 1) -> Iterator[StandaloneCluster]:
    """A master and ``workers`` workers (one core and 1 GiB each) from the installed pyspark, all
    as ``user`` and on loopback (their web UIs too); stopped by pid at the end."""
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = dict(os.environ, HOME=str(shared), SPARK_HOME=SPARK_HOME, SPARK_LOCAL_IP="127.0.0.1")
    cluster_log = open(logs / "cluster.log", "ab")
    processes = [
        start(user.prefix + [
            str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
            "--port", str(port), "--webui-port", str(ui_port)], cluster_log, env),
    ]
    try:
        time.sleep(2)
        for index in range(workers):
            processes.append(start(user.prefix + [
                str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                "--work-dir", str(shared / f"worker-{index + 1}")], cluster_log, env))
        wait_for_worker(ui_port, workers=workers)
        yield StandaloneCluster(master_url, [process.pid for process in processes[1:]])
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        cluster_log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, cluster_user, shared):
    """A master and one worker from the installed pyspark, both as the cluster's user."""
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), cluster_user, shared) as running:
        yield running.master_url


@pytest.fixture(scope="module")
def zip_only_python(shared):
    """A Python for the executors that has pyspark and friends but not this checkout's editable
    install: -S skips site-packages' .pth files, PYTHONPATH adds the libraries back."""
    wrapper = shared / "python-without-project"
    site_packages = sysconfig.get_paths()["purelib"]
    wrapper.write_text(
        "#!/bin/sh\n"
        f'export PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site_packages}"\n'
        f'exec "{sys.executable}" -S "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def submit(script, *args, master, executor_python, shared, prefix=()):
    """spark-submit as the given user (``prefix``), with the shared folder as working folder."""
    return run(
        [*prefix, *spark_submit_command(script, *args, master=master)],
        env={"PYSPARK_PYTHON": executor_python, "HOME": str(shared), "SPARK_HOME": SPARK_HOME}, cwd=shared,
    )


def executor_report(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("executor: "))
    return json.loads(line[len("executor: "):])


@pytest.fixture(scope="module")
def probe_script(shared):
    script = shared / "probe.py"
    script.write_text(EXECUTOR_PROBE)
    script.chmod(0o644)
    return script


def test_executor_python_cannot_import_the_library_without_the_zip(zip_only_python, tmp_path):
    result = subprocess.run([zip_only_python, "-c", "import pipeline_lib"], capture_output=True, text=True, cwd=tmp_path)

    assert result.returncode != 0 and "No module named 'pipeline_lib'" in result.stderr


def test_executors_import_the_library_from_the_zip_and_write_where_the_driver_created(
    cluster, cluster_user, shared, zip_only_python, probe_script
):
    folder = shared / "driver-of-the-same-user"

    report = executor_report(submit(probe_script, str(folder), master=cluster, executor_python=zip_only_python,
                                    shared=shared, prefix=cluster_user.prefix))

    assert report["module"].endswith("pipeline_lib.zip/pipeline_lib/__init__.py")
    assert report["uid"] == cluster_user.uid
    assert report["write"] == "ok"
    assert (folder / "part-from-an-executor").stat().st_uid == cluster_user.uid


def test_executors_cannot_write_where_a_driver_of_another_user_created(
    cluster, cluster_user, shared, zip_only_python, probe_script
):
    """The condition the stack had: the driver as root, the executors as another user."""
    if not cluster_user.switches:
        pytest.skip("needs root to run the driver as a user other than the worker's")
    folder = shared / "driver-as-root"

    report = executor_report(submit(probe_script, str(folder), master=cluster, executor_python=zip_only_python,
                                    shared=shared))

    assert report["uid"] == cluster_user.uid != os.geteuid()
    assert report["write"].startswith("denied: [Errno 13] Permission denied"), report


def test_stream_job_writes_the_rows_on_the_cluster_as_the_workers_user(
    cluster, cluster_user, shared, zip_only_python, spark, bootstrap, topic
):
    assert job("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--count", "20").returncode == 0
    data = shared / topic

    result = submit(
        ROOT / "jobs" / "stream.py",
        "--bootstrap-servers", bootstrap, "--topic", topic, "--output", str(data / "output"),
        "--checkpoint", str(data / "checkpoint"), "--quarantine", str(data / "quarantine"),
        master=cluster, executor_python=zip_only_python, shared=shared, prefix=cluster_user.prefix,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 20 rows written, 0 quarantined" in result.stdout
    output = spark.read.option("header", "true").csv(str(data / "output"))
    assert sorted(int(row["id"]) for row in output.collect()) == list(range(1, 21))
    owners = {path.stat().st_uid for path in (data / "output").rglob("*")}
    assert owners == {cluster_user.uid}
