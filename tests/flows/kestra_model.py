"""Just enough of Kestra's flow semantics to check the flow and run its commands for real.

Rendering covers the expressions the flow uses: ``{{ inputs.x }}`` and
``{{ outputs.task.vars.name }}``. Running follows Kestra's rules for top-level tasks: in order,
each only after the previous one succeeded, each retried up to ``retry.maxAttempts`` times
(without waiting the retry interval); script outputs are read from ``::{"outputs": ...}::`` lines.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping

import yaml

EXPRESSION = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
OUTPUTS_LINE = re.compile(r"^::(\{.*\})::$", re.MULTILINE)


def load_flow(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text())


def input_values(flow: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    values = {item["id"]: item.get("defaults") for item in flow.get("inputs", [])}
    unknown = set(overrides) - set(values)
    assert not unknown, f"not inputs of the flow: {unknown}"
    values.update(overrides)
    return values


def render(text: str, context: Mapping[str, Any]) -> str:
    def lookup(match: re.Match) -> str:
        value: Any = context
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)

    return EXPRESSION.sub(lookup, text)


@dataclass
class TaskRun:
    task_id: str
    attempts: int
    returncode: int
    stdout: str
    stderr: str
    vars: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Execution:
    state: str
    task_runs: List[TaskRun]
    outputs: Dict[str, str]


def run_flow(flow: Mapping[str, Any], inputs: Mapping[str, Any], env: Mapping[str, str], timeout: float) -> Execution:
    context: Dict[str, Any] = {"inputs": input_values(flow, inputs), "outputs": {}}
    runs: List[TaskRun] = []
    for task in flow["tasks"]:
        script = "\n".join(render(command, context) for command in task["commands"])
        attempts = task.get("retry", {}).get("maxAttempts", 1)
        for attempt in range(1, attempts + 1):
            result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=dict(env), timeout=timeout)
            if result.returncode == 0:
                break
        variables: Dict[str, Any] = {}
        for line in OUTPUTS_LINE.findall(result.stdout):
            variables.update(json.loads(line).get("outputs", {}))
        runs.append(TaskRun(task["id"], attempt, result.returncode, result.stdout, result.stderr, variables))
        context["outputs"][task["id"]] = {"vars": variables}
        if result.returncode != 0:
            return Execution("FAILED", runs, {})
    outputs = {item["id"]: render(item["value"], context) for item in flow.get("outputs", [])}
    return Execution("SUCCESS", runs, outputs)
