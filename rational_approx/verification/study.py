"""The error-versus-degree study: best rational errors for |x| and ReLU against the classical rates.

For even n = 2, 4, …, n_max it measures, with :func:`~rational_approx.fitting.minimax.minimax`,

* E_{n,n}(|x|, [−1, 1])                 (even symmetry: √t on [0, 1] at type (n/2, n/2))
* E_{n,n}(ReLU, [−1, 1])                (solved directly, no symmetry; ReLU at (n+1, n) is exactly E_{n,n}(|x|)/2)
* E_n^poly(|x|, [−1, 1])                (best polynomial of degree n, minimax type (n, 0))

beside Newman's bound 3e^{−√n} (Newman 1964), Stahl's asymptote 8e^{−π√n} (Stahl 1993) and Bernstein's β/n
(β = 0.2801694990…). Rational errors decay like e^{−π√n}; polynomial errors only like 1/n.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rational_approx.fitting.minimax import minimax

__all__ = ["StudyRow", "error_vs_degree", "write_study", "format_table", "BERNSTEIN_BETA"]

from rational_approx.verification.theory import BERNSTEIN_BETA  # lim n·E_n^poly(|x|) (Varga & Carpenter 1985)


@dataclass
class StudyRow:
    """One degree of the study; errors are sup norms on [−1, 1], times in seconds."""

    n: int
    abs_error: float
    abs_converged: bool
    abs_seconds: float
    relu_error: float
    relu_converged: bool
    relu_seconds: float
    poly_error: float
    poly_converged: bool
    newman_bound: float
    stahl_asymptote: float
    bernstein_asymptote: float

    @property
    def stahl_ratio(self) -> float:
        return self.abs_error / self.stahl_asymptote


def error_vs_degree(n_max: int = 80, *, step: int = 2, relu: bool = True, progress: bool = True) -> list[StudyRow]:
    """Run the study for n = step, 2·step, …, n_max (n even by default)."""
    from tqdm import tqdm

    rows = []
    degrees = list(range(step, n_max + 1, step))
    for n in tqdm(degrees, desc="error vs degree", unit="n", disable=not progress):
        a = minimax("abs", (n, n), raise_on_failure=False)
        if relu:
            r = minimax("relu", (n, n), symmetry="none", raise_on_failure=False)
            relu_err, relu_conv, relu_s = r.error, r.converged, r.seconds
        else:
            relu_err, relu_conv, relu_s = math.nan, False, 0.0
        p = minimax("abs", (n, 0), raise_on_failure=False)
        rows.append(StudyRow(
            n=n, abs_error=a.error, abs_converged=a.converged, abs_seconds=a.seconds,
            relu_error=relu_err, relu_converged=relu_conv, relu_seconds=relu_s,
            poly_error=p.error, poly_converged=p.converged,
            newman_bound=3.0 * math.exp(-math.sqrt(n)), stahl_asymptote=8.0 * math.exp(-math.pi * math.sqrt(n)),
            bernstein_asymptote=BERNSTEIN_BETA / n,
        ))
    return rows


def format_table(rows: list[StudyRow]) -> str:
    """Markdown table of the study."""
    head = ("| n | E_nn(|x|) | E_nn(ReLU) | E_n^poly(|x|) | Newman 3e^{-√n} | Stahl 8e^{-π√n} | E/Stahl | n·E^poly | "
            "conv. | t_abs (s) | t_relu (s) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        conv = "yes" if (r.abs_converged and r.relu_converged and r.poly_converged) else (
            f"abs:{int(r.abs_converged)} relu:{int(r.relu_converged)} poly:{int(r.poly_converged)}")
        lines.append(
            f"| {r.n} | {r.abs_error:.10e} | {r.relu_error:.6e} | {r.poly_error:.6e} | {r.newman_bound:.3e} | "
            f"{r.stahl_asymptote:.3e} | {r.stahl_ratio:.4f} | {r.n * r.poly_error:.6f} | {conv} | "
            f"{r.abs_seconds:.2f} | {r.relu_seconds:.2f} |"
        )
    return "\n".join(lines)


def write_study(rows: list[StudyRow], path: str | Path, *, seconds: float | None = None) -> Path:
    """Write the rows as JSON (with a header saying what each column is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "study": "error_vs_degree",
        "domain": [-1.0, 1.0],
        "columns": {
            "abs_error": "E_{n,n}(|x|): minimax, even symmetry, error evaluated in mpmath at located extrema",
            "relu_error": "E_{n,n}(ReLU): minimax without symmetry",
            "poly_error": "E_n^poly(|x|): minimax type (n, 0)",
            "newman_bound": "3 exp(-sqrt(n))",
            "stahl_asymptote": "8 exp(-pi sqrt(n))",
            "bernstein_asymptote": "beta / n, beta = 0.2801694990",
        },
        "seconds_total": seconds,
        "rows": [asdict(r) for r in rows],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path


def run_study(n_max: int = 80, *, json_out: str | Path | None = None, figure: str | Path | None = None,
              progress: bool = True) -> tuple[list[StudyRow], float]:
    """Run, and write the JSON and figure when paths are given; returns (rows, seconds)."""
    t0 = time.perf_counter()
    rows = error_vs_degree(n_max, progress=progress)
    seconds = time.perf_counter() - t0
    if json_out:
        write_study(rows, json_out, seconds=seconds)
    if figure:
        from rational_approx.plotting import plot_study

        plot_study(rows, figure)
    return rows, seconds
