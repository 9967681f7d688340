"""infra/docker-compose.yml, infra/kestra/Dockerfile and .dockerignore: valid for a real Compose
implementation, with the services, ports, versions, users and settings the README promises. No
Docker engine runs here, so the files are parsed, not started."""

import base64
import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import jsonschema
import pytest
import yaml

from tests.helpers import ROOT

COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "kestra" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose (Debian package docker-compose) is not installed; .ci/run installs it"
)

# A login with characters that break naive quoting in YAML, shells and JAAS alike.
TEST_USERNAME = "admin@example.com"
TEST_PASSWORD = 'p"a\\ss w0rd;#:Q'
SPARK_SERVICES = ("spark-master", "spark-worker")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def dockerfile():
    return DOCKERFILE.read_text()


def published(service):
    """{host port: container port} of a service's ports, each "127.0.0.1:HOST:CONTAINER"."""
    return {str(port).split(":")[-2]: str(port).split(":")[-1] for port in service.get("ports", [])}


def pom_property(pom, name):
    root = ElementTree.parse(ROOT / pom).getroot()
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    return root.find(f"m:properties/m:{name}", namespace).text.strip()


def pinned(package):
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for requirement in config["options"]["install_requires"].split("\n"):
        name, _, version = requirement.strip().partition("==")
        if name == package:
            return version
    raise AssertionError(f"{package} is not pinned with == in setup.cfg")


def spark_submit_defaults(service):
    """The -Dspark.* system properties of SPARK_SUBMIT_OPTS: every spark-submit's defaults."""
    options = shlex.split(service["environment"]["SPARK_SUBMIT_OPTS"])
    assert all(option.startswith("-D") and "=" in option for option in options), options
    return dict(option[2:].split("=", 1) for option in options)


def docker_compose(*args, env_file):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("KESTRA_")}
    return subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, timeout=60, env=environment,
    )


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "stack.env"
    path.write_text(f"KESTRA_USERNAME={TEST_USERNAME}\nKESTRA_PASSWORD='{TEST_PASSWORD}'\n")
    return path


@needs_compose
def test_docker_compose_parses_the_file(env_file):
    result = docker_compose("config", "-q", env_file=env_file)

    assert result.returncode == 0, result.stderr


@needs_compose
def test_file_matches_the_compose_specification_schema(compose):
    module_dir = subprocess.run(
        ["/usr/bin/python3", "-c", "import compose.config, os; print(os.path.dirname(compose.config.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    schema = json.loads(open(f"{module_dir}/compose_spec.json").read())

    jsonschema.validate(compose, schema)


@needs_compose
@pytest.mark.parametrize("content", ["", f"KESTRA_USERNAME={TEST_USERNAME}\n", "KESTRA_USERNAME=\nKESTRA_PASSWORD=\n"])
def test_stack_refuses_to_start_without_the_kestra_login(tmp_path, content):
    env_file = tmp_path / "stack.env"
    env_file.write_text(content)

    result = docker_compose("config", "-q", env_file=env_file)

    assert result.returncode != 0
    assert "copy infra/.env.example to infra/.env and set the Kestra login there" in result.stderr


@needs_compose
def test_kestra_login_comes_from_the_env_file_whatever_its_characters(env_file):
    result = docker_compose("config", env_file=env_file)

    assert result.returncode == 0, result.stderr
    kestra = yaml.safe_load(result.stdout)["services"]["kestra"]
    assert kestra["environment"]["BASIC_AUTH_USERNAME"] == TEST_USERNAME
    assert kestra["environment"]["BASIC_AUTH_PASSWORD"] == TEST_PASSWORD
    # Kestra's configuration holds placeholders only, so the password is never parsed as YAML.
    assert TEST_PASSWORD not in kestra["environment"]["KESTRA_CONFIGURATION"]


def test_no_login_is_written_in_the_compose_file(compose):
    configuration = yaml.safe_load(compose["services"]["kestra"]["environment"]["KESTRA_CONFIGURATION"])
    login = configuration["kestra"]["server"]["basic-auth"]
    # $$ is Compose's escape: the container sees ${BASIC_AUTH_...}, which Kestra resolves.
    assert login == {"username": "$${BASIC_AUTH_USERNAME}", "password": "$${BASIC_AUTH_PASSWORD}"}
    environment = compose["services"]["kestra"]["environment"]
    assert environment["BASIC_AUTH_USERNAME"].startswith("${KESTRA_USERNAME:?")
    assert environment["BASIC_AUTH_PASSWORD"].startswith("${KESTRA_PASSWORD:?")


def test_env_example_is_committed_empty_and_the_real_env_file_is_ignored():
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert values == {"KESTRA_USERNAME": "", "KESTRA_PASSWORD": ""}
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT)
        assert ignored.returncode == 0, "infra/.env is not ignored by git"


def test_stack_has_the_services_the_docs_name(compose):
    assert {"kafka", "kafka-init", "data-init", "kestra", "spark-master", "spark-worker"} <= set(compose["services"])
    page = (ROOT / "docs" / "compose.md").read_text()
    for service in compose["services"]:
        assert f"`{service}`" in page, service


def test_every_port_is_published_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_kestra_ui_on_8081_and_spark_uis_on_the_ports_they_link_to(compose):
    services = compose["services"]
    assert published(services["kestra"]) == {"8081": "8080", "4040": "4040"}
    assert published(services["spark-master"]) == {"8090": "8090"}
    assert published(services["spark-worker"]) == {"8091": "8091"}
    assert services["spark-master"]["command"][services["spark-master"]["command"].index("--webui-port") + 1] == "8090"
    assert services["spark-worker"]["command"][services["spark-worker"]["command"].index("--webui-port") + 1] == "8091"
    for name in ("kestra", *SPARK_SERVICES):
        assert services[name]["environment"]["SPARK_PUBLIC_DNS"] == "localhost", name


def test_kafka_runs_in_kraft_mode_with_a_fixed_cluster_id(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in name for name in compose["services"])
    cluster_id = kafka["environment"]["CLUSTER_ID"]
    assert len(cluster_id) == 22 and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_kafka_image_is_the_local_brokers_kafka_version(compose):
    version = pom_property("infra/kafka/pom.xml", "kafka.version")
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version}"
    assert compose["services"]["kafka-init"]["image"] == f"apache/kafka:{version}"


def test_kafka_listeners_are_plaintext_inside_the_stack(compose):
    environment = compose["services"]["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"PLAINTEXT"}
    assert published(compose["services"]["kafka"]) == {"9094": "9094"}


def test_kestra_image_is_the_version_the_kestra_engine_tests_run(dockerfile):
    version = pom_property("infra/kestra/pom.xml", "kestra.version")
    assert re.search(r"^ARG KESTRA_VERSION=(\S+)$", dockerfile, re.M).group(1) == version
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases and all(base == "kestra/kestra:v${KESTRA_VERSION}" for base in bases), bases


def test_spark_services_run_the_spark_of_the_pinned_pyspark(compose, dockerfile):
    services = compose["services"]
    image = services["kestra"]["image"]
    for name in SPARK_SERVICES:
        assert services[name]["image"] == image, name
        assert services[name]["entrypoint"][0] == "/opt/pipeline/bin/spark-class", name
    # That image's Spark is the pyspark that setup.cfg pins, installed with the package.
    assert "/opt/pipeline/bin/pip install --no-cache-dir '.[kestra]'" in dockerfile
    assert pinned("pyspark") == pom_property("infra/spark/pom.xml", "spark.version")
    for name, service in services.items():
        if service.get("image", "").startswith("apache/spark:"):
            assert re.fullmatch(rf"apache/spark:{re.escape(pinned('pyspark'))}(-.*)?", service["image"]), name


def test_driver_and_executors_run_one_python(compose, dockerfile):
    defaults = spark_submit_defaults(compose["services"]["kestra"])
    python = "/opt/pipeline/bin/python"
    assert defaults["spark.pyspark.python"] == python
    assert defaults["spark.pyspark.driver.python"] == python
    assert "python3 -m venv /opt/pipeline" in dockerfile
    assert f"PYSPARK_PYTHON={python}" in dockerfile
    # The executors run in the worker, which runs the Kestra image: the same interpreter file.
    assert compose["services"]["spark-worker"]["image"] == compose["services"]["kestra"]["image"]


def test_executors_reach_the_driver_at_a_fixed_hostname(compose):
    services = compose["services"]
    defaults = spark_submit_defaults(services["kestra"])
    assert services["kestra"]["hostname"] == "kestra"
    assert defaults["spark.driver.host"] == services["kestra"]["hostname"]
    assert defaults["spark.driver.bindAddress"] == "0.0.0.0"
    for name in SPARK_SERVICES:
        command = services[name]["command"]
        assert command[command.index("--host") + 1] == services[name]["hostname"] == name
    assert services["spark-worker"]["command"][0] == "spark://spark-master:7077"


def test_driver_and_executors_run_as_the_one_user_that_owns_the_data(compose, dockerfile):
    services = compose["services"]
    assert services["kestra"]["user"] == services["spark-worker"]["user"] == services["spark-master"]["user"] == "kestra"
    data_init = services["data-init"]
    assert data_init["user"] == "root"
    assert data_init["entrypoint"][:3] == ["chown", "-R", "kestra:kestra"] and "/data" in data_init["entrypoint"]
    assert "pipeline-data:/data" in data_init["volumes"]
    for name in ("kestra", "spark-worker"):
        assert services[name]["depends_on"]["data-init"]["condition"] == "service_completed_successfully", name
        assert "pipeline-data:/data" in services[name]["volumes"], name
    assert "chown kestra:kestra /data /app/data" in dockerfile


def test_kestra_keeps_its_data_where_server_local_puts_it(compose, dockerfile):
    kestra = compose["services"]["kestra"]
    assert "server local" in kestra["command"]
    configuration = yaml.safe_load(kestra["environment"]["KESTRA_CONFIGURATION"])
    # LocalCommand sets storage, repository, queue and the H2 datasource itself, under ./data.
    assert set(configuration["kestra"]) == {"server"}
    assert "datasources" not in configuration
    assert re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)[-1] == "/app"
    assert "kestra-data:/app/data" in kestra["volumes"]
    used = {volume.split(":")[0] for service in compose["services"].values() for volume in service.get("volumes", [])}
    assert set(compose["volumes"]) <= used


def test_spark_processes_run_in_the_foreground(compose):
    for name in SPARK_SERVICES:
        service = compose["services"][name]
        assert service["entrypoint"][0].endswith("/spark-class"), name
        assert "SPARK_NO_DAEMONIZE" not in service.get("environment", {}), name


def test_input_topic_is_created(compose):
    command = " ".join(compose["services"]["kafka-init"]["command"])
    assert "--create" in command and "--topic=input-data" in command


def test_kestra_loads_the_flows_folder(compose):
    kestra = compose["services"]["kestra"]
    assert "--flow-path /app/flows" in kestra["command"]
    assert "../flows:/app/flows:ro" in kestra["volumes"]


def test_output_and_checkpoint_survive_a_restart_on_a_named_volume(compose):
    assert "pipeline-data" in compose["volumes"]
    assert "pipeline-data:/data" in compose["services"]["kestra"]["volumes"]
    assert "pipeline-data:/data" in compose["services"]["spark-worker"]["volumes"]


def dockerignored(path, patterns):
    """Whether Docker leaves ``path`` (or a folder above it) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: end]) for end in range(1, len(parts) + 1)]
    for pattern in patterns:
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(candidate.split("/")[-1], pattern[3:]):
                return True
    return False


def test_image_build_context_holds_the_sources_only():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert not any(pattern.startswith("!") for pattern in patterns)
    for left_out in (".git/HEAD", ".venv/bin/python", ".kafka/data/meta.properties", "infra/kafka/libs/kafka_2.13.jar",
                     "infra/spark/jars/kafka-clients.jar", "dist/pipeline_lib.zip", "output/part-0.csv",
                     "checkpoint/output/offsets/0", "infra/kestra/target/kestra-engine.jar", "infra/.env",
                     "pipeline_lib/__pycache__/schema.cpython-311.pyc", ".pytest_cache/v/cache"):
        assert dockerignored(left_out, patterns), left_out
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "Makefile", "pipeline_lib/__init__.py",
                   "jobs/stream.py", "jobs/produce.py", "infra/spark/pom.xml"):
        assert not dockerignored(needed, patterns), needed


def test_image_builds_the_zip_and_the_connector_jars_only(dockerfile):
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    make = re.findall(r"(?:RUN|&&)\s+make\s+([^\\&\n]+)", instructions)
    assert len(make) == 1, make
    targets = [word for word in make[0].split() if "=" not in word]
    assert targets == ["dist", "infra/spark/jars/.fetched"]
    assert "[test]" not in instructions
    # Maven and make stay in the build stage; the image that runs gets the venv and the project.
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "maven" not in final_stage and "make " not in final_stage
    assert "COPY --from=build /opt/pipeline /opt/pipeline" in final_stage
