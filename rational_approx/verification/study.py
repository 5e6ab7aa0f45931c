"""The error-versus-degree study: best rational errors for |x| and ReLU against the classical rates.

For even n = 2, 4, …, n_max it measures, with :func:`~rational_approx.fitting.minimax.minimax`,

* E_{n,n}(|x|, [−1, 1])                 (even symmetry: √t on [0, 1] at type (n/2, n/2))
* E_{n,n}(ReLU, [−1, 1])                (solved directly, no symmetry; ReLU at (n+1, n) is exactly E_{n,n}(|x|)/2)
* E_n^poly(|x|, [−1, 1])                (best polynomial of degree n, minimax type (n, 0))

beside Newman's bound 3e^{−√n} (Newman 1964), Stahl's asymptote 8e^{−π√n} (Stahl 1993) and Bernstein's β/n
(β = 0.2801694990…). Rational errors decay like e^{−π√n}; polynomial errors only like 1/n.

Each double-precision E_{n,n}(|x|) is set against the multiprecision value of the same run
(:func:`~rational_approx.fitting.highprec.abs_minimax_table`): the column ``abs_digits`` is how many digits agree,
and ReLU at type (n, n) is reported as a multiple of E_{n,n}(|x|)/2 (the best ReLU error at type (n+1, n)).
:func:`study_markdown` writes the tables and the reading of docs/study.md from the rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rational_approx.fitting.minimax import minimax

__all__ = ["StudyRow", "error_vs_degree", "write_study", "format_table", "study_markdown", "run_study",
           "BERNSTEIN_BETA"]

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
    abs_reference: str | None = None
    """E_{n,n}(|x|) from the multiprecision Remez sweep, 20 significant digits (None when not computed)."""
    abs_digits: float | None = None
    """−log10 |abs_error − reference| / reference: digits of the double-precision value that agree (None: all 17)."""

    @property
    def stahl_ratio(self) -> float:
        return self.abs_error / self.stahl_asymptote

    @property
    def relu_ratio(self) -> float:
        """E_{n,n}(ReLU) / (E_{n,n}(|x|)/2), the latter from the reference when there is one."""
        ref = float(self.abs_reference) if self.abs_reference is not None else self.abs_error
        return self.relu_error / (ref / 2)


def error_vs_degree(n_max: int = 80, *, step: int = 2, relu: bool = True, progress: bool = True,
                    reference: bool = True) -> list[StudyRow]:
    """Run the study for n = step, 2·step, …, n_max (n even by default).

    ``reference``: also compute the multiprecision E_{n,n}(|x|) (one continuation sweep to n_max) and the digits
    of the double-precision value that agree with it.
    """
    import mpmath
    from tqdm import tqdm

    refs = {}
    if reference:
        from rational_approx.fitting.highprec import abs_minimax_table

        refs = {r.type[0]: r.error for r in abs_minimax_table(n_max, check_bits=0)}
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
        if n in refs:
            with mpmath.workdps(40):
                diff = abs(mpmath.mpf(a.error) - refs[n]) / refs[n]
            rows[-1].abs_reference = mpmath.nstr(refs[n], 20)
            rows[-1].abs_digits = None if diff == 0 else float(-mpmath.log10(diff))
    return rows


def format_table(rows: list[StudyRow]) -> str:
    """Markdown table of the study (no timings, so that a rerun reproduces it; they are in the JSON)."""
    from rational_approx.verification.markdown import markdown_table

    body = []
    for r in rows:
        conv = "yes" if (r.abs_converged and r.relu_converged and r.poly_converged) else (
            f"abs:{int(r.abs_converged)} relu:{int(r.relu_converged)} poly:{int(r.poly_converged)}")
        # beyond 15 digits the count depends on the last bit of the double result: shown as "≥ 15"
        digits = "—" if r.abs_reference is None else (
            "≥ 15" if r.abs_digits is None or r.abs_digits >= 15 else f"{r.abs_digits:.1f}")
        ref = f"{float(r.abs_reference):.12e}" if r.abs_reference else "—"
        body.append([r.n, f"{r.abs_error:.10e}", ref, digits,
                     f"{r.relu_error:.6e}", f"{r.relu_ratio:.4f}", f"{r.poly_error:.6e}", f"{r.newman_bound:.3e}",
                     f"{r.stahl_asymptote:.3e}", f"{r.stahl_ratio:.4f}", f"{r.n * r.poly_error:.6f}", conv])
    return markdown_table(["n", "E_nn(|x|) (double)", "multiprecision", "digits agreeing", "E_nn(ReLU)",
                           "ReLU / (E_nn(|x|)/2)", "E_n^poly(|x|)", "Newman 3e^{−√n}", "Stahl 8e^{−π√n}",
                           "E/Stahl", "n·E^poly", "conv."], body)


def study_markdown(rows: list[StudyRow], *, seconds: float | None = None) -> dict[str, str]:
    """The generated blocks of docs/study.md: ``study-table`` and ``study-reading`` (numbers read off the rows)."""
    first, last = rows[0], rows[-1]
    ratios = [r.relu_ratio for r in rows]
    tail = [r for r in rows if r.n >= last.n - 8 and r.abs_reference is not None]
    reading = (
        f"Rational errors fall like e^{{−π√n}}: E_n/Stahl rises slowly from {first.stahl_ratio:.4f} (n = {first.n}) "
        f"to {last.stahl_ratio:.4f} (n = {last.n}), far below Newman's explicit bound; polynomial errors fall only "
        f"like β/n (n·E_n = {last.n * last.poly_error:.5f} at n = {last.n}, β = {BERNSTEIN_BETA:.10f}). "
        f"ReLU at type (n, n) is {first.relu_ratio:.2f}× (n = {first.n}) to {last.relu_ratio:.2f}× (n = {last.n}) "
        f"E_nn(|x|)/2 (between {min(ratios):.2f}× and {max(ratios):.2f}× over the table), i.e. *worse* than ReLU at "
        f"type (n + 1, n), whose best error is exactly E_nn(|x|)/2: the odd numerator term x/2 costs a degree.")
    if tail:
        digs = [r.abs_digits if r.abs_digits is not None else 16.0 for r in tail]
        low = min(rows, key=lambda r: r.abs_digits if r.abs_digits is not None else 16.0)
        reading += (f" The double-precision E_nn(|x|) agrees with the multiprecision value to {min(digs):.1f}–"
                    f"{max(digs):.1f} digits for n = {tail[0].n}–{tail[-1].n}, so print ≈ {math.floor(min(digs))} "
                    f"digits there (fewest: {low.abs_digits or 16.0:.1f} at n = {low.n}).")
    if seconds is not None:
        reading += f" The run took {seconds:.1f} s."
    return {"study-table": format_table(rows), "study-reading": reading}


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
            "abs_reference": "E_{n,n}(|x|) from highprec.abs_minimax_table, 20 digits",
            "abs_digits": "digits of abs_error agreeing with abs_reference (null: all)",
        },
        "seconds_total": seconds,
        "rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()}
                 for r in rows],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False))
    tmp.replace(path)
    return path


def run_study(n_max: int = 80, *, json_out: str | Path | None = None, figure: str | Path | None = None,
              progress: bool = True, docs: str | Path | None = None) -> tuple[list[StudyRow], float]:
    """Run, and write the JSON, the figure and the generated blocks of ``docs`` when given; returns (rows, seconds)."""
    t0 = time.perf_counter()
    rows = error_vs_degree(n_max, progress=progress)
    seconds = time.perf_counter() - t0
    if json_out:
        write_study(rows, json_out, seconds=seconds)
    if figure:
        from rational_approx.plotting import plot_study

        plot_study(rows, figure)
    if docs:
        from rational_approx.verification.markdown import write_blocks

        write_blocks(docs, study_markdown(rows, seconds=seconds))
    return rows, seconds
