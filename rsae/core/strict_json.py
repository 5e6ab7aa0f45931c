"""Strict JSON for every file and ``--json`` output of :mod:`rsae`: no NaN or Infinity, null plus a reason.

Python's :func:`json.dumps` writes ``NaN`` and ``Infinity`` by default, which RFC 8259 parsers (``jq``,
JavaScript, ``json.loads(..., parse_constant=...)`` set to raise) reject. Every writer in the package goes
through this module instead:

* :func:`finite` returns a JSON-able copy of a value in which each non-finite float is ``None`` (tuples become
  lists, numpy and 0-d torch scalars become Python numbers, arrays and tensors become nested lists, keys become
  strings);
* :func:`dumps` serialises that copy with ``allow_nan=False`` and, when something was replaced and the value is
  a dict, adds the key :data:`REASONS_KEY` mapping the dotted path of every null it introduced to the value it
  stood for (``{"metrics.fvu": "nan"}``), so a null is never unexplained;
* :func:`write_json` does the same into a file, atomically.

Example
-------
>>> from rsae.core.strict_json import dumps
>>> dumps({"mse": 0.5, "fvu": float("nan")})
'{"mse": 0.5, "fvu": null, "null_reasons": {"fvu": "nan"}}'
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rsae.core.data import atomic_write_text

__all__ = ["REASONS_KEY", "finite", "dumps", "write_json"]

REASONS_KEY = "null_reasons"
"""Key :func:`dumps` adds to a top-level dict: dotted path of each introduced null → ``nan``, ``inf`` or ``-inf``."""


def _clean(value: Any, path: str, reasons: dict[str, str]) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        reasons[path or "<root>"] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v, f"{path}.{k}" if path else str(k), reasons) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", reasons) for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays or tensors
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return _clean(item(), path, reasons)
    tolist = getattr(value, "tolist", None)  # numpy arrays and tensors (detached, on the CPU)
    if callable(tolist) and getattr(value, "ndim", 0) > 0:
        detach = getattr(value, "detach", None)
        return _clean((detach().cpu() if callable(detach) else value).tolist(), path, reasons)
    return value


def finite(value: Any) -> Any:
    """A JSON-able copy of ``value`` with every non-finite float replaced by ``None``."""
    return _clean(value, "", {})


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (see the module docstring); raises ``ValueError`` if anything is not JSON."""
    reasons: dict[str, str] = {}
    clean = _clean(value, "", reasons)
    if reasons and isinstance(clean, dict):
        clean[REASONS_KEY] = {**clean.get(REASONS_KEY, {}), **reasons}
    return json.dumps(clean, indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> None:
    """Write :func:`dumps` of ``value`` to ``path`` atomically (temporary file, fsync, rename)."""
    atomic_write_text(Path(path), dumps(value, indent=indent))
