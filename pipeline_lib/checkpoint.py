"""A checkpoint bound to the folders of the sinks it writes, so that the two never drift apart.

A streaming query trusts its checkpoint: with an output deleted it would go on from the
checkpoint's offsets and the old rows would be lost silently; with a new checkpoint on an old
output it would number batches from 0 again and skip those already marked. Both are refused, as
is a checkpoint recorded for other folders. :func:`inspect_checkpoint` tells (for the plan,
writing nothing); :func:`claim_checkpoint` records the binding (for the run). Only local folders
are inspected.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional

from pipeline_lib.errors import PipelineError
from pipeline_lib.sinks.ledger import FolderLedger

OWNER_FILE = "pipeline-owner.json"
NEW = "new"
RESUMED = "resumed"


class CheckpointMismatchError(PipelineError):
    """A checkpoint and output folders that were not written together."""


def inspect_checkpoint(checkpoint: str, folders: Mapping[str, Optional[str]]) -> str:
    """:data:`NEW` for a checkpoint that planned no batch yet, :data:`RESUMED` for one that
    goes on from its batches with these ``folders`` (sink name -> folder); a pair not written
    together raises :class:`CheckpointMismatchError`.

    >>> inspect_checkpoint("/nonexistent/checkpoint", {"output": "/nonexistent/output"})
    'new'
    """
    bound = _absolute(folders)
    if any("://" in path for path in [checkpoint, *bound.values()]):
        return RESUMED if _has_entries(os.path.join(checkpoint, "offsets")) else NEW
    owner_path = os.path.join(checkpoint, OWNER_FILE)
    # A batch: offsets log, each sink's files and mark, commit log. A crash can stop between
    # any two; only a state that no crash leaves is refused.
    planned = _has_entries(os.path.join(checkpoint, "offsets"))
    committed = _has_entries(os.path.join(checkpoint, "commits"))
    # A run that stopped before planning a batch (a missing topic, a mistyped folder) wrote
    # nothing: its binding is replaced rather than held against the corrected run.
    if planned and os.path.exists(owner_path):
        with open(owner_path, encoding="utf-8") as handle:
            owner = json.load(handle).get("sinks", {})
        for name, folder in bound.items():
            if owner.get(name, folder) != folder:
                raise CheckpointMismatchError(
                    f"checkpoint {checkpoint} belongs to the pipeline writing {name} to {owner[name]}, "
                    f"not {folder}; use that folder or a new checkpoint"
                )
    for name, folder in bound.items():
        if committed and not os.path.isdir(folder):
            raise CheckpointMismatchError(
                f"{name} folder {folder} is gone but checkpoint {checkpoint} has committed batches: "
                "restore it, or start over with a new checkpoint and an empty folder"
            )
        if not planned and FolderLedger.has_history(folder):
            raise CheckpointMismatchError(
                f"{name} folder {folder} already holds written batches but checkpoint {checkpoint} is new: "
                "give the checkpoint that wrote them, or a new folder"
            )
    return RESUMED if planned else NEW


def claim_checkpoint(checkpoint: str, folders: Mapping[str, Optional[str]]) -> str:
    """Check the binding as :func:`inspect_checkpoint` does, then record it in the checkpoint."""
    state = inspect_checkpoint(checkpoint, folders)
    if "://" not in checkpoint:
        os.makedirs(checkpoint, exist_ok=True)
        with open(os.path.join(checkpoint, OWNER_FILE), "w", encoding="utf-8") as handle:
            json.dump({"sinks": _absolute(folders)}, handle)
    return state


def _absolute(folders: Mapping[str, Optional[str]]) -> dict:
    return {name: folder if "://" in folder else os.path.abspath(folder) for name, folder in folders.items() if folder}


def _has_entries(folder: str) -> bool:
    return os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))
