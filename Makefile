# Every target builds what it needs: a fresh machine needs only Python 3.11, Java 17+ and Maven.
PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV)/bin/python)
SPARK_JARS_DIR := infra/spark/jars
KAFKA_HOME ?= .kafka
KAFKA_PORT ?= 9092
# make kafka-up KAFKA_NODES=3: a cluster on KAFKA_PORT and the next two ports.
KAFKA_NODES ?= 1
PYTEST_ARGS ?=

# The connector and the few jars it needs that pyspark does not ship already.
SPARK_CONNECTOR_JARS := spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2

export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export PIPELINE_JARS := $(abspath $(SPARK_JARS_DIR))

.PHONY: install jars spark-classes dist docs lint test test-fast test-kestra demo kafka-up kafka-down bench bench-install clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

jars: $(SPARK_JARS_DIR)/.fetched infra/kafka/libs/.fetched

$(SPARK_JARS_DIR)/.fetched: infra/spark/pom.xml
	mvn -B -q -f infra/spark/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DincludeArtifactIds=$(SPARK_CONNECTOR_JARS) -DoutputDirectory=$(abspath $(SPARK_JARS_DIR))
	touch $@

infra/kafka/libs/.fetched: infra/kafka/pom.xml $(VENV)/.installed
	$(PY) infra/kafka/broker.py fetch
	touch $@

# The driver's class archive that infra/spark/submit hands each driver JVM: it starts sooner.
# It depends on the JDK and pyspark's jars, not on the library (Python is not on the JVM's class path).
CLASS_ARCHIVE := infra/spark/classes/driver.jsa
spark-classes: $(CLASS_ARCHIVE)

$(CLASS_ARCHIVE): infra/spark/archive-classes $(VENV)/.installed $(SPARK_JARS_DIR)/.fetched | dist/pipeline_lib.zip
	PIPELINE_VENV=$(abspath $(VENV)) infra/spark/archive-classes $@

dist: dist/pipeline_lib.zip

# Only the package's modules: no tests, no caches.
dist/pipeline_lib.zip: $(VENV)/.installed $(shell find pipeline_lib -name '*.py')
	@mkdir -p dist
	$(PY) -c "import pathlib, zipfile; \
	files = sorted(pathlib.Path('pipeline_lib').rglob('*.py')); \
	z = zipfile.ZipFile('$@', 'w', zipfile.ZIP_DEFLATED); [z.write(f) for f in files]; z.close(); \
	print('built $@ with', len(files), 'modules')"

# The configuration reference, written from the models the code validates with.
docs: install
	$(PY) -m pipeline_lib.reference > docs/reference/configuration.md

# ruff (lint and format check) and mypy, configured in pyproject.toml; fast, so CI runs it first.
LINT_PATHS := pipeline_lib jobs infra

lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

$(VENV)/.lint-installed: $(VENV)/.installed setup.cfg
	$(VENV)/bin/pip install -q -e '.[test,lint]'
	touch $@

test: install jars spark-classes dist
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install jars spark-classes dist
	$(PY) -m pytest -m "not slow and not kestra" $(PYTEST_ARGS)

test-kestra: install jars spark-classes dist
	$(PY) -m pytest -m kestra $(PYTEST_ARGS)

demo: install jars spark-classes dist
	PY=$(PY) KAFKA_HOME=$(KAFKA_HOME) KAFKA_PORT=$(KAFKA_PORT) bash infra/demo.sh

# Kestra's engine: the launcher and Kestra's jars, built with Maven (Java 25) into infra/kestra/target.
.PHONY: kestra flow
kestra: install
	$(PY) -c "from infra.kestra.run_flow import build; build()"

# The flow on Kestra's own engine, on the local Kafka (started if none answers), data in .flow/.
flow: install jars dist kestra
	PY=$(PY) KAFKA_HOME=$(KAFKA_HOME) KAFKA_PORT=$(KAFKA_PORT) bash infra/kestra/flow.sh

kafka-up: install jars
	$(PY) infra/kafka/broker.py start --nodes $(KAFKA_NODES) --home $(KAFKA_HOME) --port $(KAFKA_PORT)

kafka-down: install
	$(PY) infra/kafka/broker.py stop --home $(KAFKA_HOME)

# The benchmark suite (bench/bench_suite.py): results.json, throughput.png, latency.png and the
# README's table. make's own steps are timed first (make demo's venv and jars, on a fresh clone).
# 5 rounds of every comparison, about 20 minutes on 2 cores.
# Other sizes: make bench BENCH_ARGS="--sizes 20,100000" (or "--repeats 3").
BENCH_ARGS ?=
BENCH_STEPS := build/bench-make-steps.json

bench-install: $(VENV)/.bench-installed

$(VENV)/.bench-installed: $(VENV)/.installed setup.cfg
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench:
	$(PYTHON) bench/make_steps.py --make "$(MAKE)" --out $(BENCH_STEPS) venv=$(VENV)/.installed \
		jars=$(SPARK_JARS_DIR)/.fetched,infra/kafka/libs/.fetched dist=dist/pipeline_lib.zip spark-classes=$(CLASS_ARCHIVE) bench-extra=$(VENV)/.bench-installed
	$(PY) bench/bench_suite.py --make-steps $(BENCH_STEPS) --repeats 5 $(BENCH_ARGS)
	$(PY) bench/readme_table.py

# The long run (bench/soak.py): 2,000 micro-batches at processing-time=200ms, about 25 minutes;
# the soak key of bench/results.json and bench/soak.png. Others: make soak SOAK_ARGS="--batches 500".
SOAK_ARGS ?=

.PHONY: soak
soak: install jars bench-install
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf dist .demo .pytest_cache $(SPARK_JARS_DIR) infra/spark/classes infra/kafka/libs
	find . -name __pycache__ -prune -exec rm -rf {} +
