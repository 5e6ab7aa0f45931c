"""The resumable stage runner of :func:`rsae.experiments.reproduce.reproduce`: each stage writes
``<out>/<stage>/stage.json`` with a hash of its configuration, and a rerun skips every stage whose marker matches
and whose files still exist."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsae.core.strict_json import write_json

MARKER = "stage.json"
"""Name of the per-stage marker file."""


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, value: Any) -> None:
    """Write strict JSON atomically (:func:`rsae.core.strict_json.write_json`), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, value, indent=1)


class _Stages:
    """Runs stages, skipping those whose marker matches (same config hash, files present)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log: dict[str, dict[str, Any]] = {}

    def run(self, name: str, config: Any, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Result of stage ``name``: read from its marker if valid, else ``fn(stage_folder)`` (which returns a
        JSON-able dict; its ``files`` entry lists the paths whose existence makes the stage valid)."""
        folder = self.out / name
        digest = _hash(config)
        marker = folder / MARKER
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text())
            except json.JSONDecodeError:
                saved = {}
            if saved.get("config_hash") == digest and all(Path(f).exists() for f in saved["result"].get("files", [])):
                self.log[name] = {"skipped": True, "seconds": saved["seconds"], "config_hash": digest}
                return saved["result"]
        sys.stderr.write(f"rsae reproduce: stage {name}\n")
        t0 = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        result = fn(folder)
        seconds = time.perf_counter() - t0
        _write_json(marker, {"stage": name, "config_hash": digest, "seconds": seconds, "result": result})
        self.log[name] = {"skipped": False, "seconds": seconds, "config_hash": digest}
        return json.loads(marker.read_text())["result"]
