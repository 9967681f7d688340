"""Every shell command in README.md and docs/ is one its program accepts as written: each job's
and script's flags parsed by that program's own command line, each make target, file and
compose service there. Those that run for real are run by the tests named beside them."""

import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import yaml

from infra.kafka import broker
from infra.kestra import run_flow
from pipeline_lib.cli import produce_parser, stream_parser
from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_WORDS = {"export", "set", "echo", "tail", "cat", "head", "grep", "."}
COMPOSE_FILE = "infra/docker-compose.yml"


def commands(page: Path) -> Iterator[Tuple[str, List[str]]]:
    """The commands of the page's ``sh`` blocks, one per pipeline stage: continuation lines
    joined, comments dropped, ``[--flag VALUE]`` read as the flag given, ``a|b`` as ``a``."""
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\[([^\]]*)\]", r"\1", line)
            line = re.sub(r"(?<=[\w-])\|[\w|-]+", "", line)
            words = shlex.split(line, comments=True)
            stage: List[str] = []
            for word in [*words, "|"]:
                if word in ("|", "&", ";", "&&"):
                    if stage:
                        yield line.strip(), stage
                    stage = []
                else:
                    stage.append(word.rstrip(";"))


ALL = [(page.relative_to(ROOT).as_posix(), line, words) for page in PAGES for line, words in commands(page)]


def make_targets() -> set:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def job_arguments(words: List[str]) -> Tuple[str, List[str]]:
    """The job a command runs (python jobs/x.py, infra/spark/submit or spark-submit ... jobs/x.py)
    and its arguments, the options for spark-submit before it left out."""
    index = next(i for i, word in enumerate(words) if word.startswith("jobs/"))
    return Path(words[index]).stem, [word for word in words[index + 1 :] if word != "..."]


def check(words: List[str]) -> None:
    program = words[0]
    if program in SHELL_WORDS or "=" in program:
        return
    if program == "make":
        assert set(words[1:]) <= make_targets(), words
    elif any(word.startswith("jobs/") for word in words):
        name, arguments = job_arguments(words)
        (produce_parser() if name == "produce" else stream_parser()).parse_args(arguments)
        if program not in ("python", ".venv/bin/python", "spark-submit"):
            assert (ROOT / program).is_file(), program
    elif program == ".venv/bin/python" and words[1] == "infra/kafka/broker.py":
        broker.parser().parse_args(words[2:])
    elif program == ".venv/bin/python" and words[1] == "infra/kestra/run_flow.py":
        arguments = run_flow.parser().parse_args(words[2:])
        assert (ROOT / arguments.flow).is_file()
    elif program.startswith("infra/kafka/bin/"):
        assert (ROOT / program).is_file(), program
    elif program == ".venv/bin/spark-class":
        assert words[1].startswith("org.apache.spark.deploy."), words
    elif program == "docker":
        assert words[1:4] == ["compose", "-f", COMPOSE_FILE], words
        services = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())["services"]
        assert words[4] in ("pull", "build", "up", "ps", "exec"), words
        if words[4] == "exec":
            assert words[5] in services, words
    elif program == "curl":
        url = next(word for word in words if word.startswith("http"))
        # the Prometheus scrape: tests/integration/test_metrics_port.py; Kestra's API: the compose stack's
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics|http://localhost:8081/api/v1/main/executions/\S+", url), url
    else:
        pytest.fail(f"no check for the program {program!r}")


def test_the_docs_have_shell_commands_to_check():
    assert len(ALL) >= 20 and {page for page, _, _ in ALL} >= {"README.md", "docs/jobs.md", "docs/kestra.md"}


@pytest.mark.parametrize("page, line, words", ALL, ids=[f"{page}:{words[0]}" for page, _, words in ALL])
def test_the_command_is_one_its_program_accepts(page, line, words):
    check(words)
