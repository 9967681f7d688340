"""infra/docker-compose.yml: valid for a real Compose implementation, with the services and
ports the README promises. No Docker engine runs here, so the file is parsed, not started."""

import json
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from tests.helpers import ROOT

COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose (Debian package docker-compose) is not installed; .ci/run installs it"
)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def published(service):
    return {str(port).split(":")[0]: str(port).split(":")[1] for port in service.get("ports", [])}


@needs_compose
def test_docker_compose_parses_the_file():
    result = subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr


@needs_compose
def test_file_matches_the_compose_specification_schema(compose):
    module_dir = subprocess.run(
        ["/usr/bin/python3", "-c", "import compose.config, os; print(os.path.dirname(compose.config.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    schema = json.loads(open(f"{module_dir}/compose_spec.json").read())

    jsonschema.validate(compose, schema)


def test_stack_has_the_services_the_readme_names(compose):
    assert {"kafka", "kafka-init", "kestra", "spark-master", "spark-worker"} <= set(compose["services"])
    readme = (ROOT / "README.md").read_text()
    for service in compose["services"]:
        assert f"`{service}`" in readme, service


def test_kestra_ui_on_8081_and_spark_master_ui_on_8090(compose):
    assert published(compose["services"]["kestra"]) == {"8081": "8080"}
    assert published(compose["services"]["spark-master"]) == {"8090": "8080"}


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in name for name in compose["services"])


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


def test_spark_image_matches_the_pinned_pyspark(compose):
    import pyspark

    assert compose["services"]["spark-master"]["image"].startswith(f"apache/spark:{pyspark.__version__}")
