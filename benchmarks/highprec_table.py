"""E_{n,n}(|x|, [−1, 1]) for every even n ≤ n_max in multiprecision: two independent runs, agreeing digits, brackets.

A benchmark (it measures; run time grows like n³ and reaches hours near n = 160 on a shared machine), not a test.
Three steps, each resumable, all state under ``--dir`` (default benchmarks/results/highprec):

1. ``sweep --variant A`` and ``sweep --variant B``: two independent continuation sweeps of the √t Remez solver of
   :mod:`rational_approx.fitting.highprec` (E_{2k,2k}(|x|) = E_{k,k}(√t, [0, 1])). Run A works at 8k + 200 bits and
   starts each k from the reference of k − 1 stretched in log t; run B works at 10k + 264 bits and starts from that
   stretched reference jittered by up to ±5 % of each gap (seeded per k). One JSON line per n (E to the working
   precision, the converged reference for resuming, coefficients and alternation points for certification).
   ``--resume`` continues from the last line.
2. ``certify --n-max 120 [--jobs J]``: the rigorous bracket of :func:`rational_approx.verification.certify.certify`
   for the run-A approximant of every even n ≤ 120 not yet certified (J processes).
3. ``table``: the table (JSON + markdown) and the Stahl figure. ``digits`` = −log10(|E_A − E_B| / E_A), the digits
   shown to agree between the two runs (different working precision, different start) — an empirical agreement,
   not a proof; the proof is the certified bracket, where there is one.

    python benchmarks/highprec_table.py sweep --variant A --n-max 160 &
    python benchmarks/highprec_table.py sweep --variant B --n-max 160 &
    python benchmarks/highprec_table.py certify --n-min 82 --n-max 120 --jobs 2
    python benchmarks/highprec_table.py table --docs docs/verification.md --figure figures/stahl_ratio.png \
        --certified-table benchmarks/results/certified_table.json   # brackets n ≤ 80 from certify-table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import mpmath
import numpy as np

from rational_approx.fitting.highprec import abs_result
from rational_approx.fitting.highprec import sqrt_sweep as sweep_states
from rational_approx.representation.multiprecision import arb_from_mpf, mpf_from_arb, working_precision

E2 = "0.043689012692076362"
E30 = "2.1739878201697943e-7"
VARIANTS = {"A": {"bits": (8, 200), "jitter": 0.0}, "B": {"bits": (10, 264), "jitter": 0.1}}


def _bits(variant: str) -> Callable[[int], int]:
    """Working precision of run ``variant`` at type (k, k) of √t: a·k + b bits."""
    a, b = VARIANTS[variant]["bits"]
    return lambda k: a * k + b


def _mp(x, bits: int) -> str:
    return mpmath.nstr(x, int(bits * 0.30103) + 3)


def sweep(variant: str, n_max: int, path: Path, resume: bool) -> None:
    """One continuation sweep k = 1 … n_max/2 (:func:`rational_approx.fitting.highprec.sqrt_sweep`), one JSON line
    per n appended to ``path``; with ``resume``, it continues after the last line."""
    start, levels = None, []
    done = _records(path, repair=True) if resume else []
    if done:
        rec = done[-1]
        with mpmath.workprec(rec["prec"] + 64), working_precision(rec["prec"] + 64):
            levels = [arb_from_mpf(mpmath.mpf(h)) for h in rec["levels"]]
            start = ([arb_from_mpf(mpmath.mpf(t)) for t in rec["reference_t"]], levels)
    t_start = time.perf_counter()
    with path.open("a") as fh:
        for state, prec, _, secs in sweep_states(n_max // 2, bits=_bits(variant),
                                                 jitter=VARIANTS[variant]["jitter"], resume=start):
            k = state.k
            res = abs_result(state, 2 * k, prec, float("nan"), secs)
            levels = (levels + [state.h])[-2:]
            with mpmath.workprec(prec):
                rec = {"n": 2 * k, "variant": variant, "E": _mp(res.error, prec), "prec": prec,
                       "iterations": state.iterations, "level_spread": state.spread, "seconds": secs,
                       "cumulative_seconds": time.perf_counter() - t_start,
                       "reference_t": [_mp(mpf_from_arb(t), prec) for t in state.ts],
                       "levels": [_mp(mpf_from_arb(x), prec) for x in levels],
                       "p": [_mp(c, prec) for c in res.p], "q": [_mp(c, prec) for c in res.q],
                       "extremal_points": [_mp(x, prec) for x in res.extremal_points]}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            print(f"{variant} n = {2 * k:3d}  E = {mpmath.nstr(res.error, 25)}  {prec} bits  "
                  f"{state.iterations} it  {secs:.1f} s", flush=True)


def _records(path: Path, repair: bool = False) -> list[dict]:
    """The JSON lines of ``path``. A last line cut short (the process was killed while writing it) is skipped, and
    with ``repair`` removed from the file, so that a resumed sweep appends after the last whole record; any other
    bad line is an error."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i != len(lines) - 1 or text.endswith("\n"):
                message = f"{path}: line {i + 1} is not JSON (not a cut-short last line); fix or remove it"
                raise SystemExit(message) from exc
            print(f"{path}: skipping the cut-short last line {i + 1}", flush=True)
            if repair:
                path.write_text("".join(ln + "\n" for ln in lines[:-1]))
    return records


def _load(path: Path) -> dict[int, dict]:
    return {r["n"]: r for r in _records(path)}


def _certify_one(rec: dict, max_intervals: int = 1_000_000) -> dict:
    from rational_approx.fitting.mp_remez import HighPrecResult
    from rational_approx.representation.domain import Domain
    from rational_approx.representation.targets import get_target
    from rational_approx.verification.certify import certify

    with mpmath.workprec(rec["prec"]):
        res = HighPrecResult(target=get_target("abs"), type=(rec["n"], rec["n"]), domain=Domain.interval(-1.0, 1.0),
                             error=mpmath.mpf(rec["E"]), p=[mpmath.mpf(c) for c in rec["p"]],
                             q=[mpmath.mpf(c) for c in rec["q"]],
                             extremal_points=[mpmath.mpf(x) for x in rec["extremal_points"]], extremal_errors=[],
                             prec=rec["prec"], digits=float("nan"), iterations=rec["iterations"],
                             seconds=rec["seconds"], converged=True, method="remez-sqrt-barycentric")
        c = certify("abs", res, max_intervals=max_intervals)  # n ≳ 86 needs more than the default 200 000
        inside = c.lower <= float(res.error) <= c.upper
    return {"n": rec["n"], "lower": c.lower, "upper": c.upper, "relative_width": c.relative_width,
            "certified": bool(c.certified), "contains_E": bool(inside), "lower_class": c.lower_class,
            "seconds": c.seconds}


def certify_rows(directory: Path, n_max: int, jobs: int, n_min: int = 2, max_intervals: int = 1_000_000) -> None:
    """Certify the run-A approximant of every even n in [n_min, n_max] not yet certified (``certificates.jsonl``)."""
    todo = [r for n, r in sorted(_load(directory / "A.jsonl").items())
            if n_min <= n <= n_max and n not in _load(directory / "certificates.jsonl")]
    with (directory / "certificates.jsonl").open("a") as fh, ProcessPoolExecutor(max(1, jobs)) as ex:
        for out in ex.map(partial(_certify_one, max_intervals=max_intervals), todo):
            fh.write(json.dumps(out) + "\n")
            fh.flush()
            print(f"certified n = {out['n']:3d}  [{out['lower']:.16e}, {out['upper']:.16e}]  "
                  f"rel. width {out['relative_width']:.1e}  {out['seconds']:.1f} s", flush=True)


def _agreeing_digits(ea: str, eb: str) -> float | None:
    with mpmath.workdps(max(len(ea), len(eb))):
        a, b = mpmath.mpf(ea), mpmath.mpf(eb)
        d = abs(a - b) / abs(a)
        return None if d == 0 else float(-mpmath.log10(d))


def _from_certified_table(path: str, A: dict[int, dict]) -> dict[int, dict]:
    """|x| brackets of ``rational-approx certify-table`` (same approximant as run A: abs_minimax_table at 8k + 200
    bits), checked against run A's E_n like the benchmark's own certificates."""
    out = {}
    for r in json.loads(Path(path).read_text())["rows"]:
        n = r["type"][0]
        if r["target"] == "abs" and r["type"][0] == r["type"][1] and n in A:
            e = float(mpmath.mpf(A[n]["E"]))
            out[n] = {"n": n, "lower": r["lower"], "upper": r["upper"], "relative_width": r["relative_width"],
                      "certified": r["certified"], "contains_E": r["lower"] <= e <= r["upper"],
                      "lower_class": r["lower_class"], "seconds": r["certify_seconds"], "source": "certify-table"}
    return out


def table(directory: Path, docs: str | None, figure: str | None, out_json: str | None = None,
          certified_table: str | None = None) -> dict:
    """Assemble ``table.json`` in ``directory`` and ``out_json`` (+ the generated blocks of ``docs``, + the figure).

    ``certified_table``: also take |x| brackets from that ``rational-approx certify-table`` JSON where this
    benchmark has none.
    """
    A, B, C = (_load(directory / f) for f in ("A.jsonl", "B.jsonl", "certificates.jsonl"))
    if certified_table:
        C = _from_certified_table(certified_table, A) | C
    rows = []
    for n in sorted(A):
        a = A[n]
        with mpmath.workdps(60):
            e25 = mpmath.nstr(mpmath.mpf(a["E"]), 25, min_fixed=0, max_fixed=0)  # 25 significant digits
        row = {"n": n, "E": e25, "prec_bits_A": a["prec"],
               "seconds_A": a["seconds"], "iterations_A": a["iterations"],
               "E_B": B[n]["E"][:40] if n in B else None, "prec_bits_B": B[n]["prec"] if n in B else None,
               "seconds_B": B[n]["seconds"] if n in B else None}
        with mpmath.workdps(60):
            row["stahl_ratio"] = float(mpmath.mpf(a["E"]) / (8 * mpmath.exp(-mpmath.pi * mpmath.sqrt(n))))
        row["digits"] = _agreeing_digits(a["E"], B[n]["E"]) if n in B else None
        row["digits_note"] = (None if n not in B else "identical to every digit stored" if row["digits"] is None
                              else "agreement of runs A and B")
        row["certificate"] = C.get(n)
        rows.append(row)
    checks = {}
    for n, ref in ((2, E2), (30, E30)):
        if n in A:
            with mpmath.workdps(40):
                checks[f"E_{n}"] = {"reference": ref, "abs_diff": float(abs(mpmath.mpf(A[n]["E"]) - mpmath.mpf(ref)))}
    both = [r for r in rows if r["digits_note"]]
    out = {"what": "E_{n,n}(|x|, [-1, 1]); digits = agreement of two independent runs (A: 8k+200 bits, "
                   "continuation start; B: 10k+264 bits, jittered start); certificate = certify('abs', run-A result)",
           "n_max_A": max(A) if A else None, "n_max_B": max(B) if B else None,
           "n_max_certified": max(C) if C else None,
           "min_digits": min((r["digits"] or math.inf) for r in both) if both else None,
           # each n's own wall time, summed: a sweep resumed several times restarts cumulative_seconds
           "seconds_A": sum(a["seconds"] for a in A.values()) if A else None,
           "seconds_B": sum(b["seconds"] for b in B.values()) if B else None,
           "longest_A": max(([a["seconds"], n] for n, a in A.items()), default=None),
           "longest_B": max(([b["seconds"], n] for n, b in B.items()), default=None),
           "seconds_certify": sum(c["seconds"] for c in C.values()),
           "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
           "checks": checks, "extrapolated_stahl_limit": stahl_extrapolation(rows), "rows": rows}
    (directory / "table.json").write_text(json.dumps(out, indent=1, allow_nan=False))
    if out_json:
        Path(out_json).write_text(json.dumps(out, indent=1, allow_nan=False))
    if docs:
        from rational_approx.verification.markdown import write_blocks

        write_blocks(docs, {"highprec-table": markdown(out), "highprec-summary": summary(out)})
    if figure:
        plot_stahl(out, figure)
    return out


def stahl_extrapolation(rows: list[dict]) -> dict | None:
    """Extrapolate ρ_n = E_n e^{π√n}/8 to n → ∞ by least squares in powers of 1/√n over the largest n.

    ρ_n = c_0 + c_1/√n + c_2/n + c_3/n^{3/2} fitted to the last ≤ 12 rows; the limit estimate is c_0 (Stahl: 1),
    and its spread over fits with 3 and 4 terms is reported as a rough error.
    """
    pts = [(r["n"], r["stahl_ratio"]) for r in rows if r["n"] >= 20]
    if len(pts) < 6:
        return None
    pts = pts[-12:]
    x = np.array([1 / math.sqrt(n) for n, _ in pts])
    y = np.array([v for _, v in pts])
    est, coef = {}, {}
    for terms in (3, 4):
        coef[terms] = np.polyfit(x, y, terms - 1)
        est[terms] = float(coef[terms][-1])
    return {"limit": est[4], "limit_3_terms": est[3], "spread": abs(est[4] - est[3]),
            "coefficients_high_to_low": coef[4].tolist(), "n_fitted": [n for n, _ in pts],
            "fit": "rho_n = c0 + c1 n^-1/2 + c2 n^-1 + c3 n^-3/2 over n = " + f"{pts[0][0]}..{pts[-1][0]}"}


def summary(out: dict) -> str:
    """One paragraph: coverage of each run, agreeing digits, certificates, the Stahl extrapolation, run times."""
    rows = out["rows"]
    both = [r for r in rows if r["digits_note"]]
    certs = [r["certificate"] for r in rows if r["certificate"]]
    txt = (f"Coverage of this run (goal: every even n ≤ 160, brackets to n = 120): run A reached n = {out['n_max_A']} "
           f"in {out['seconds_A']:.0f} s, run B n = {out['n_max_B']} in {out['seconds_B']:.0f} s ({out['machine']}, "
           "shared with other jobs, `nice`; the sum of each n's wall time over the sweeps' resumed invocations, "
           "which includes time a sweep was paused while other jobs were timed: the longest n took "
           f"{out['longest_A'][0]:.0f} s in A (n = {out['longest_A'][1]}) and {out['longest_B'][0]:.0f} s in B "
           f"(n = {out['longest_B'][1]})).")
    if both:
        low = min(both, key=lambda r: r["digits"] if r["digits"] is not None else math.inf)
        n20 = [r["n"] for r in both if r["digits"] is None or r["digits"] >= 20]
        txt += (f" Runs A and B agree to at least {low['digits']:.1f} digits for every n ≤ {both[-1]['n']} (fewest at "
                f"n = {low['n']}); ≥ 20 agreeing digits at {len(n20)} of {len(both)} rows.")
    if certs:
        ok = [c for c in certs if c["certified"] and c["contains_E"]]
        tight = [c for c in ok if c["relative_width"] <= 1e-8]
        loose = sorted((c for c in certs if c not in tight), key=lambda c: c["n"])
        txt += (f" Certified brackets: {len(ok)} of {len(certs)} rows (n ≤ {out['n_max_certified']}) are certified "
                f"and contain E_n; {len(tight)} of them with relative width ≤ 1e-8"
                + (" (wider: " + ", ".join(f"n = {c['n']}: {c['relative_width']:.1e}" for c in loose)
                   + ")" if loose else "")
                + f"; {out['seconds_certify']:.0f} s of certification in all.")
    for name, c in out["checks"].items():
        txt += f" {name}: |computed − Chebfun's {c['reference']}| = {c['abs_diff']:.1e}."
    ex = out["extrapolated_stahl_limit"]
    if ex:
        txt += (f" Extrapolated lim E_n e^{{π√n}}/8 = {ex['limit']:.4f} (4-term fit; 3-term {ex['limit_3_terms']:.4f}; "
                f"{ex['fit']}) against Stahl's 1.")
    return txt


def markdown(out: dict) -> str:
    from rational_approx.verification.markdown import markdown_table

    body = []
    for r in out["rows"]:
        c = r["certificate"]
        digits = "—" if r["digits_note"] is None else ("all stored" if r["digits"] is None else f"{r['digits']:.1f}")
        body.append([r["n"], r["E"], digits, f"{r['prec_bits_A']}/{r['prec_bits_B'] or '—'}",
                     f"{r['stahl_ratio']:.10f}",
                     f"{c['lower']:.16e}" if c else "—", f"{c['upper']:.16e}" if c else "—",
                     f"{c['relative_width']:.1e}" if c else "—",
                     ("yes" if c["certified"] and c["contains_E"] else "NO") if c else "—",
                     f"{r['seconds_A']:.1f}"])
    return markdown_table(["n", "E_n (run A)", "agreeing digits (A vs B)", "bits A/B", "E_n e^{π√n}/8",
                           "certified lower", "certified upper", "rel. width", "certified", "s (A)"], body)


def plot_stahl(out: dict, path: str) -> None:
    from rational_approx.plotting import plot_stahl_ratio

    ex = out["extrapolated_stahl_limit"]
    plot_stahl_ratio([r["n"] for r in out["rows"]], [r["stahl_ratio"] for r in out["rows"]], path,
                     fit=(ex["coefficients_high_to_low"], min(ex["n_fitted"])) if ex else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("sweep", "certify", "table"))
    ap.add_argument("--dir", default="benchmarks/results/highprec")
    ap.add_argument("--variant", choices=tuple(VARIANTS), default="A")
    ap.add_argument("--n-max", type=int, default=160)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--docs", default=None, help="markdown file with a 'highprec-table' generated block")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--out", default="benchmarks/results/highprec_table.json", help="where the table step writes JSON")
    ap.add_argument("--n-min", type=int, default=2, help="certify step: smallest n")
    ap.add_argument("--max-intervals", type=int, default=1_000_000, help="certify step: subdivision budget")
    ap.add_argument("--certified-table", default=None,
                    help="table step: also use the |x| brackets of this `rational-approx certify-table` JSON")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    if args.step == "sweep":
        sweep(args.variant, args.n_max, d / f"{args.variant}.jsonl", args.resume)
    elif args.step == "certify":
        certify_rows(d, args.n_max, args.jobs, args.n_min, args.max_intervals)
    else:
        out = table(d, args.docs, args.figure, args.out, args.certified_table)
        print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
