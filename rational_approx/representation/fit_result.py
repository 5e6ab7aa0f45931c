"""The one base of every fit result: AAA, Lawson, minimax, high precision and safe-Padé results read alike.

Every fitter returns a dataclass derived from :class:`FitResult`, so ``res.error``, ``res.converged``,
``res.iterations``, ``res.seconds``, ``res.target``, ``res.type``, ``res.domain`` and ``res.to_dict()`` mean the same
thing whichever algorithm produced ``res``:

* ``error`` — the measured sup error max_{x∈D} |f(x) − r(x)| (each fitter says on which point set it is measured);
* ``converged`` — the fitter's own stopping test was met (and r has no pole in the domain);
* ``iterations`` — the number of outer iterations (Remez exchanges, Lawson steps, AAA refinement rounds,
  relaxed-Remez rounds);
* ``to_dict()`` — a JSON-ready dict that a strict JSON parser accepts: a non-finite number is written as null with
  a ``<key>_note`` saying what it was (:func:`json_number`).

Where a fitter keeps a point set it is called ``samples`` and is an array of abscissae (its size is ``samples.size``).

Example
-------
>>> from rational_approx import minimax
>>> d = minimax("abs", (4, 4)).to_dict()
>>> sorted(k for k in d if k in ("converged", "error", "iterations", "seconds", "type"))
['converged', 'error', 'iterations', 'seconds', 'type']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import numpy as np

from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import Target

__all__ = ["FitResult", "json_number", "json_ready"]


def json_number(value: Any) -> tuple[float | int | None, str | None]:
    """(value, None) for a finite number, (None, reason) for inf / −inf / nan — strict JSON has neither."""
    if isinstance(value, bool | np.bool_):
        return bool(value), None
    if isinstance(value, int | np.integer):
        return int(value), None
    v = float(value)
    if math.isfinite(v):
        return v, None
    return None, ("+inf" if v > 0 else "-inf") if math.isinf(v) else "nan"


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, numpy arrays and scalars, dataclasses, domains) that
    ``json.dumps(..., allow_nan=False)`` accepts: every non-finite float becomes null, and a dict entry ``k`` that was
    non-finite gets ``k_note`` ("+inf", "-inf" or "nan")."""
    if isinstance(obj, dict):
        out: dict = {}
        for k, v in obj.items():
            if isinstance(v, float | np.floating) and not math.isfinite(float(v)):
                out[k], out[f"{k}_note"] = json_number(v)
            else:
                out[k] = json_ready(v)
        return out
    if isinstance(obj, Domain):
        return [list(iv) for iv in obj.intervals]
    if is_dataclass(obj) and not isinstance(obj, type):
        return json_ready(obj.to_dict() if hasattr(obj, "to_dict") else asdict(obj))
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return json_number(obj)[0]
    return obj


@dataclass(kw_only=True)
class FitResult:
    """Fields every fit result has (keyword-only, after each subclass's own fields).

    Attributes
    ----------
    target : Target
    type : (m, n)
    domain : Domain
    error : float (mpmath mpf for high-precision results)
        Measured sup error of the approximant over the domain.
    converged : bool
    iterations : int
    seconds : float
        Wall-clock time of the fit.
    """

    target: Target
    type: tuple[int, int]
    domain: Domain
    error: Any
    converged: bool
    iterations: int
    seconds: float

    def to_dict(self) -> dict:
        """The common fields as a strict-JSON-ready dict (subclasses add theirs)."""
        return json_ready({
            "target": self.target.name,
            "params": dict(self.target.params),
            "type": list(self.type),
            "domain": [list(iv) for iv in self.domain.intervals],
            "error": float(self.error),
            "converged": bool(self.converged),
            "iterations": int(self.iterations),
            "seconds": float(self.seconds),
        })
