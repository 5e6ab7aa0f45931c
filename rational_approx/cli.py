"""Command line: ``rational-approx fit | study | certify | certify-table | claims``.

Every subcommand prints a table or, with ``--json``, one JSON object on stdout; progress goes to stderr. Bad arguments
give a one-line error and exit status 2, never a traceback.

Examples
--------
    rational-approx fit --target abs --type 30,30 --method minimax --json
    rational-approx fit --target jumprelu --theta 0.5 --gap 0.05 --type 9,8
    rational-approx study --n-max 80 --json-out figures/error_vs_degree.json --figure figures/error_vs_degree.png
    rational-approx certify --target abs --type 20,20 --json
    rational-approx certify-table --abs-n-max 80 --json-out benchmarks/results/certified_table.json
    rational-approx claims --markdown --figures figures
    rational-approx claims --only zolotarev --write-docs docs/theory_and_claims.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from rational_approx.errors import DegreeError, IllConditionedWarning, RationalApproxError
from rational_approx.representation.barycentric import parse_type
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import TARGET_NAMES, get_target

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own default prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="abs", choices=TARGET_NAMES, help="function to approximate (default abs)")
    p.add_argument("--theta", type=float, default=None, help="threshold of jumprelu / heaviside")
    p.add_argument("--tau", type=float, default=None, help="threshold of topk_gate")
    p.add_argument("--gap", type=float, default=None, help="half-width of the gap around a jump (default 0.05)")
    p.add_argument("--domain", default=None,
                   help="'a,b' or a union 'a,b;c,d' (default: the target's); write --domain=-1,1 when a starts with -")


def _complex_list(z: np.ndarray) -> list:
    return [[float(v.real), float(v.imag)] for v in np.asarray(z, dtype=complex)]


def _fit(args: argparse.Namespace) -> dict:
    m, n = parse_type(args.type)
    tgt = get_target(args.target, theta=args.theta, tau=args.tau)
    dom = Domain.parse(args.domain) if args.domain else tgt.default_domain(args.gap)
    tgt.check_domain(dom)
    if args.method == "minimax":
        from rational_approx.fitting.minimax import minimax

        res = minimax(tgt, (m, n), dom, symmetry=args.symmetry, maxiter=args.maxiter)
        extra = {"alternations": res.alternations, "expected_alternations": res.expected_alternations,
                 "symmetry": res.symmetry, "iterations": res.iterations,
                 "extremal_points": res.extremal_points.tolist()}
    elif args.method == "lawson":
        from rational_approx.fitting.lawson import lawson

        res = lawson(tgt, (m, n), dom)
        extra = {"iterations": res.iterations}
    else:
        from rational_approx.fitting.aaa import aaa

        if m != n:
            raise DegreeError("aaa produces type (n, n) approximants; pass --type n,n")
        res = aaa(tgt, dom, degree=n)
        extra = {"cleanup_removed": res.n_cleanup_removed, "samples": res.samples}
    r = res.r
    poles = r.poles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        pq = r.to_monomial((dom.a, dom.b))
    # Monomial coefficients are meaningful only if they reproduce r more accurately than r approximates the target.
    usable = pq.conversion_error * max(1.0, float(np.max(np.abs(r(dom.sample(200)))))) < res.error
    return {
        "target": tgt.name,
        "params": tgt.params,
        "type": [m, n],
        "domain": [list(iv) for iv in dom.intervals],
        "method": args.method,
        "error": float(res.error),
        "converged": bool(res.converged),
        "seconds": float(res.seconds),
        "poles": _complex_list(poles),
        "real_poles_in_domain": r.real_poles_in(dom.intervals).tolist(),
        "real_poles_in_gaps": r.real_poles_in(dom.gaps()).tolist() if dom.gaps() else [],
        **extra,
        "representation": {
            "barycentric": {k: v for k, v in r.to_dict().items() if k != "type"},
            "monomial": {"numerator": pq.p.real.tolist(), "denominator": pq.q.real.tolist()} if usable else None,
            "monomial_conversion_error": float(pq.conversion_error),
        },
    }


def _print_fit(out: dict) -> None:
    print(f"{out['method']} fit of {out['target']} type ({out['type'][0]}, {out['type'][1]}) on "
          f"{' ∪ '.join(f'[{a:g}, {b:g}]' for a, b in out['domain'])}")
    print(f"  sup error   {out['error']:.16e}")
    print(f"  converged   {out['converged']}   ({out['seconds']:.3f} s)")
    if "alternations" in out:
        print(f"  alternation {out['alternations']} extrema (needed {out['expected_alternations']}), "
              f"symmetry {out['symmetry']}")
    print(f"  poles       {len(out['poles'])}, real poles in the domain: {out['real_poles_in_domain'] or 'none'}")
    mono = out["representation"]["monomial"]
    if mono is None:
        print(f"  monomial coefficients withheld: conversion error "
              f"{out['representation']['monomial_conversion_error']:.1e} exceeds the approximation error")
    else:
        print(f"  numerator   {np.array2string(np.array(mono['numerator']), precision=6)}")
        print(f"  denominator {np.array2string(np.array(mono['denominator']), precision=6)}")


def _study(args: argparse.Namespace) -> dict:
    from rational_approx.verification.study import format_table, run_study

    rows, seconds = run_study(args.n_max, json_out=args.json_out, figure=args.figure, progress=not args.quiet,
                              docs=args.write_docs)
    return {"seconds": seconds, "json_out": args.json_out, "figure": args.figure, "rows": rows,
            "table": format_table(rows)}


def _add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rational-approx certify``."""
    parser.add_argument("--target", default="abs", help="abs, relu, sign, heaviside, jumprelu, topk_gate")
    parser.add_argument("--type", required=True, help="m,n (numerator and denominator degrees)")
    parser.add_argument("--domain", default=None, help="'a,b' or 'a,b;c,d' (default: the target's)")
    parser.add_argument(
        "--gap", type=float, default=None, help="half-width of the gap around a jump (default 0.05)"
    )
    parser.add_argument("--theta", type=float, default=None, help="threshold of jumprelu / heaviside")
    parser.add_argument("--tau", type=float, default=None, help="threshold of topk_gate")
    parser.add_argument(
        "--source",
        choices=("auto", "highprec", "minimax"),
        default="auto",
        help="approximant: multiprecision Remez (abs (n,n), relu (2k+1,2k); else minimax refined at "
        "--prec bits) or double-precision minimax",
    )
    parser.add_argument("--rtol", type=float, default=1e-8, help="tightness of the upper bound")
    parser.add_argument("--prec", type=int, default=256, help="ball precision in bits")
    parser.add_argument("--coefficients", action="store_true", help="include the certified coefficients")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _certify(args: argparse.Namespace) -> dict:
    """``rational-approx certify``: compute an approximant, certify it, return the certificate as a dict."""
    m, n = parse_type(args.type)
    tgt = get_target(args.target, theta=args.theta, tau=args.tau)
    dom = Domain.parse(args.domain) if args.domain else tgt.default_domain(args.gap)
    t0 = time.perf_counter()
    standard = dom.intervals == ((-1.0, 1.0),)
    from rational_approx.fitting.highprec import abs_minimax, relu_minimax
    from rational_approx.fitting.refine import refine_minimax
    from rational_approx.verification.certify import certify

    if args.source != "minimax" and standard and tgt.name == "abs" and m == n and n >= 2:
        approx, how = abs_minimax(n), f"highprec.abs_minimax({n})"
    elif (
        args.source != "minimax" and standard and tgt.name == "relu" and m == n + 1 and n % 2 == 0 and n >= 2
    ):
        approx, how = relu_minimax(n // 2), f"highprec.relu_minimax({n // 2})"
    else:
        from rational_approx.fitting.minimax import minimax

        approx, how = minimax(tgt, (m, n), dom), "minimax (double precision)"
        if args.source == "highprec":
            approx, how = refine_minimax(approx, prec=args.prec), f"minimax refined at {args.prec} bits"
    t_approx = time.perf_counter() - t0
    cert = certify(tgt, approx, dom, type=(m, n), rtol=args.rtol, prec=args.prec)
    out = cert.to_dict(coefficients=args.coefficients)
    out["approximant"] = how
    out["approximation_seconds"] = t_approx
    return out


def _certify_table(args: argparse.Namespace) -> dict:
    """``rational-approx certify-table``: {"rows": [...], "seconds", "abs_n_max", "markdown"}."""
    from pathlib import Path

    from rational_approx.verification.certified_table import certified_table, certified_table_markdown

    out = certified_table(args.abs_n_max, progress=lambda s: print(f"certifying {s} …", file=sys.stderr, flush=True))
    out["markdown"] = certified_table_markdown(out)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=1, allow_nan=False))
    if args.write_docs:
        from rational_approx.verification.markdown import write_blocks

        out["docs_blocks_written"] = write_blocks(args.write_docs, {"certified-table": out["markdown"]})
    return out


def _add_claims_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rational-approx claims``."""
    from rational_approx.verification.claims import CLAIM_IDS

    parser.add_argument("--only", nargs="+", default=None, choices=CLAIM_IDS, metavar="ID",
                        help=f"measure only these claims ({', '.join(CLAIM_IDS)})")
    parser.add_argument("--markdown", action="store_true", help="print the markdown table instead of JSON")
    parser.add_argument("--write-docs", default=None, metavar="MD",
                        help="write the tables these claims determine into the generated blocks of MD "
                        "(docs/theory_and_claims.md)")
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="also write the three theory figures into DIR (e.g. figures)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _claims(args: argparse.Namespace) -> dict:
    """``rational-approx claims``: {"claims": [...], "seconds": total, "markdown": table}."""
    from rational_approx.verification.claims import claims, claims_markdown

    t0 = time.perf_counter()
    rows = claims(args.only, progress=lambda cid: print(f"measuring {cid} …", file=sys.stderr, flush=True))
    out = {"claims": rows, "seconds": time.perf_counter() - t0, "markdown": claims_markdown(rows)}
    if getattr(args, "write_docs", None):
        from rational_approx.verification.claims import write_claims_docs

        out["docs_blocks_written"] = write_claims_docs(rows, args.write_docs)
    if getattr(args, "figures", None):
        from rational_approx.plotting import make_figures

        out["figures"] = make_figures(args.figures)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rational-approx", description="Rational approximation of sparsity gates.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("fit", help="fit one rational approximant")
    _add_target_arguments(p)
    p.add_argument("--type", required=True, help="m,n (numerator, denominator degrees)")
    p.add_argument("--method", choices=("minimax", "lawson", "aaa"), default="minimax")
    p.add_argument("--symmetry", choices=("auto", "even", "relu", "none"), default="auto",
                   help="minimax symmetry reduction (default auto)")
    p.add_argument("--maxiter", type=int, default=40, help="minimax Remez iterations per degree step")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_fit, show=_print_fit)

    p = sub.add_parser("study", help="error-versus-degree study of |x| and ReLU (the main job)")
    p.add_argument("--n-max", type=int, default=80, help="largest even degree (default 80)")
    p.add_argument("--json-out", default=None, help="write the table as JSON here")
    p.add_argument("--figure", default=None, help="write the log-scale figure here (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--write-docs", default=None, metavar="MD",
                   help="write the table and the reading into the generated blocks of MD (docs/study.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_study, show=lambda out: print(out["table"] + f"\n\n{out['seconds']:.1f} s"))

    p = sub.add_parser("certify", help="certified two-sided bounds on the best error")
    _add_certify_arguments(p)
    p.set_defaults(run=_certify, show=lambda out: print(json.dumps(out, indent=1, default=_json_default)))

    p = sub.add_parser("certify-table", help="certified brackets for every gate of the activation library and |x|")
    p.add_argument("--abs-n-max", type=int, default=80, help="also |x| at every even n up to this (0: none)")
    p.add_argument("--json-out", default=None, help="write the table as JSON here")
    p.add_argument("--write-docs", default=None, metavar="MD",
                   help="write the markdown into the generated blocks of MD (docs/verification.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_certify_table, show=lambda out: print(out["markdown"]))

    p = sub.add_parser("claims", help="measure every quantitative approximation claim (paper and classical)")
    _add_claims_arguments(p)
    p.set_defaults(run=_claims, show=lambda out: print(out["markdown"]))
    return parser


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    if isinstance(o, Domain):
        return [list(iv) for iv in o.intervals]
    return str(o)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable = args.run
    try:
        out = run(args)
    except (RationalApproxError, ValueError) as exc:
        print(f"rational-approx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False) and not getattr(args, "markdown", False):
        out = {k: v for k, v in out.items() if k != "table"} if isinstance(out, dict) else out
        print(json.dumps(out, default=_json_default))
    else:
        args.show(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
