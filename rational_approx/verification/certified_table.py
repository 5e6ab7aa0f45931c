"""The certified table: rigorous brackets of the best error for every gate of the activation library and for |x|.

For each case a best approximant is computed in multiprecision and handed to
:func:`rational_approx.verification.certify.certify`, which returns lower ≤ E_{m,n}(f, D) ≤ upper proved in ball
arithmetic (upper: Taylor-model subdivision; lower: de la Vallée Poussin). Cases:

* every (gate, type) of :data:`rational_approx.fitting.activation.DEFAULT_TYPES` (the init-coefficient library) on
  the gate's design domain — ReLU and |x| on [−1, 1]; sign and Heaviside on [−1, −δ] ∪ [δ, 1]; JumpReLU (θ = 0.5)
  and the TopK gate (τ = 0.5) on [−1, θ − δ] ∪ [θ + δ, 1]; δ = 0.05 —, plus ReLU at the types (2, 2), (5, 4),
  (9, 8) and sign at δ = 0.01;
* |x| on [−1, 1] at every even n ≤ ``abs_n_max`` (one continuation sweep of
  :func:`~rational_approx.fitting.highprec.abs_minimax_table`).

Approximants: :func:`~rational_approx.verification.certify.approximant_to_certify` with source "highprec" —
:func:`~rational_approx.fitting.highprec.abs_minimax` / :func:`~rational_approx.fitting.highprec.relu_minimax` where
they apply, otherwise :func:`~rational_approx.fitting.minimax.minimax` refined at 256 bits by
:func:`~rational_approx.fitting.refine.refine_minimax`. On a gapped domain the certified lower bound may hold only
for competitors with no pole in the gap; the column ``lower bound covers`` says so for each row.

Example
-------
>>> out = certified_table(abs_n_max=4, cases=[("relu", {}, (3, 2), None)])
>>> [(r["target"], r["type"], r["certified"]) for r in out["rows"]]
[('relu', [3, 2], True), ('abs', [2, 2], True), ('abs', [4, 4], True)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rational_approx.fitting.activation import DEFAULT_TYPES
from rational_approx.representation.targets import get_target
from rational_approx.verification.markdown import markdown_table

__all__ = ["certified_table", "certified_table_markdown", "library_cases"]

GAP = 0.05
_PARAMS = {"jumprelu": {"theta": 0.5}, "topk_gate": {"tau": 0.5}, "heaviside": {"theta": 0.0}}


def library_cases() -> list[tuple[str, dict, tuple[int, int], float | None]]:
    """(target, params, type, gap) for every gate and type of the init-coefficient library, plus extra ReLU types
    and sign at δ = 0.01 (``gap`` None: the target's own domain, [−1, 1])."""
    cases = [(g, _PARAMS.get(g, {}), t, GAP if g in ("jumprelu", "topk_gate", "heaviside", "sign") else None)
             for g, t in DEFAULT_TYPES.items()]
    cases += [("relu", {}, t, None) for t in ((2, 2), (5, 4), (9, 8))]
    cases.append(("sign", {}, DEFAULT_TYPES["sign"], 0.01))
    return cases


def _row(tgt, typ, dom, cert, how: str, approx_seconds: float) -> dict:
    if cert.lower_class == "hull" and dom.gaps():
        covers = "competitors with no pole in " + " ∪ ".join(f"({a:g}, {b:g})" for a, b in dom.gaps())
    else:
        covers = "every competitor of the type"
    return {"target": tgt.name, "params": dict(tgt.params), "type": list(typ),
            "domain": [list(iv) for iv in dom.intervals], "lower": cert.lower, "upper": cert.upper,
            "relative_width": cert.relative_width, "certified": bool(cert.certified),
            "lower_class": cert.lower_class, "lower_bound_covers": covers, "approximant": how,
            "approximation_seconds": approx_seconds, "certify_seconds": cert.seconds}


def certified_table(abs_n_max: int = 80, *, cases: Sequence[tuple] | None = None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Certify every case of ``cases`` (default :func:`library_cases`) and |x| at every even n ≤ ``abs_n_max``.

    Returns {"rows": [...], "seconds": total, "abs_n_max": …}; rows as in :func:`certified_table_markdown`.
    """
    from rational_approx.fitting.highprec import abs_minimax_table
    from rational_approx.verification.certify import approximant_to_certify, certify

    t0 = time.perf_counter()
    rows = []
    for name, params, typ, gap in (library_cases() if cases is None else cases):
        tgt = get_target(name, **params)
        dom = tgt.default_domain(gap)
        if progress:
            progress(f"{name} {typ} on {dom}")
        ta = time.perf_counter()
        approx, how = approximant_to_certify(tgt, tuple(typ), dom, source="highprec", prec=256)
        ta = time.perf_counter() - ta
        rows.append(_row(tgt, typ, dom, certify(tgt, approx, dom, type=tuple(typ)), how, ta))
    if abs_n_max >= 2:
        tgt = get_target("abs")
        last = [time.perf_counter()]

        def one(res) -> None:
            n = res.type[0]
            if progress:
                progress(f"abs ({n}, {n})")
            rows.append(_row(tgt, (n, n), res.domain, certify(tgt, res), f"highprec.abs_minimax_table({abs_n_max})",
                             time.perf_counter() - last[0]))
            last[0] = time.perf_counter()

        abs_minimax_table(abs_n_max, check_bits=0, callback=one)
    return {"rows": rows, "abs_n_max": abs_n_max, "seconds": time.perf_counter() - t0}


def certified_table_markdown(out: dict) -> str:
    """Markdown of :func:`certified_table`: one row per case."""
    body = []
    for r in out["rows"]:
        params = ", ".join(f"{k} = {v:g}" for k, v in r["params"].items())
        dom = " ∪ ".join(f"[{a:g}, {b:g}]" for a, b in r["domain"])
        body.append([r["target"] + (f" ({params})" if params else ""), f"({r['type'][0]}, {r['type'][1]})", dom,
                     f"{r['lower']:.16e}", f"{r['upper']:.16e}", f"{r['relative_width']:.1e}",
                     "yes" if r["certified"] else "NO", r["lower_bound_covers"],
                     f"{r['approximation_seconds'] + r['certify_seconds']:.1f}"])
    return markdown_table(["target", "type", "domain", "certified lower", "certified upper", "(U − L)/L",
                           "certified", "lower bound covers", "s"], body)
