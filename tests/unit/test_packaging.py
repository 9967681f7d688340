"""The zip for spark-submit holds the package and nothing else, and works on its own."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, SUBMIT, ZIP, run, spark_submit

CLASS_ARCHIVE = ROOT / "infra" / "spark" / "classes" / "driver.jsa"

PROBE = '''
import sys
import pipeline_lib
from pipeline_lib.session import get_spark
from pipeline_lib.transforms import add_processed_value, parse_json, valid_records

spark = get_spark("zip-probe")
df = spark.createDataFrame([('{"id": 1, "value": 21}',)], "value string")
row = df.transform(parse_json()).transform(valid_records()).transform(add_processed_value()).first()
print("imported from", pipeline_lib.__file__)
print("processed_value", row["processed_value"])
print("shuffle partitions", spark.conf.get("spark.sql.shuffle.partitions"))
'''


def test_zip_holds_only_the_package_modules():
    names = zipfile.ZipFile(ZIP).namelist()

    assert names and all(re.fullmatch(r"pipeline_lib/([a-z_]+/)?[a-z_0-9]+\.py", name) for name in names), names
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline_lib").rglob("*.py")) == sorted(names)


@pytest.mark.slow
def test_spark_submit_imports_the_library_from_the_zip(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)

    result = spark_submit(script, timeout=300, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported from {ZIP}" in result.stdout or "pipeline_lib.zip/pipeline_lib/__init__.py" in result.stdout
    assert "processed_value 42" in result.stdout
    assert "shuffle partitions 2" in result.stdout  # spark-submit's --conf wins over the defaults


# The Python driver's parent is the driver's JVM: its memory map shows the archives it mapped.
MAPPED_ARCHIVES = '''
import os
print("mapped", sorted({line.split()[-1] for line in open(f"/proc/{os.getppid()}/maps") if line.rstrip().endswith(".jsa")}))
'''


def test_the_driver_jvm_maps_the_class_archive(tmp_path):
    script = tmp_path / "maps.py"
    script.write_text(MAPPED_ARCHIVES)

    result = spark_submit(script, timeout=300, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert str(CLASS_ARCHIVE) in result.stdout, result.stdout


def test_a_session_started_from_python_maps_the_class_archive_too(spark):
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()

    assert str(CLASS_ARCHIVE) in Path(f"/proc/{jvm_pid}/maps").read_text()


# The driver JVM's own value of the flag that keeps large methods from the JIT.
HUGE_METHODS_FLAG = '''
from pipeline_lib.session import get_spark

jvm = get_spark("jit-probe").sparkContext._jvm
bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
    jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
print("DontCompileHugeMethods", bean.getVMOption("DontCompileHugeMethods").getValue())
'''


def test_spark_submit_lets_the_jit_compile_spark_s_large_generated_methods(tmp_path):
    script = tmp_path / "jit.py"
    script.write_text(HUGE_METHODS_FLAG)

    result = spark_submit(script, timeout=300, cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "DontCompileHugeMethods false" in result.stdout, result.stdout


def test_a_session_started_from_python_lets_the_jit_compile_large_methods_too(spark):
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )

    assert bean.getVMOption("DontCompileHugeMethods").getValue() == "false"
    assert spark.conf.get("spark.executor.extraJavaOptions") == "-XX:-DontCompileHugeMethods"


def test_a_driver_class_path_the_archive_was_not_made_for_starts_without_it_and_without_a_word(tmp_path):
    script = tmp_path / "maps.py"
    script.write_text(MAPPED_ARCHIVES)
    extra_jar = next((ROOT / "infra" / "spark" / "jars").glob("*.jar"))

    # --driver-class-path puts a jar before Spark's own: not the class path the archive holds.
    result = run([str(SUBMIT), "--master", "local[1]", "--driver-class-path", str(extra_jar), str(script)], cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "mapped" in result.stdout and str(CLASS_ARCHIVE) not in result.stdout, result.stdout
    # The JVM's own log lines go to stdout.
    assert "[warning]" not in result.stdout + result.stderr and "cds" not in result.stdout + result.stderr


def test_setup_cfg_builds_a_wheel_of_the_package(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )

    assert result.returncode == 0, result.stderr
    wheel = next(Path(tmp_path).glob("pipeline_lib-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "pipeline_lib/transforms.py" in names
    assert not any(name.startswith(("tests/", "jobs/", "infra/")) for name in names)
