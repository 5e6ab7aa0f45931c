"""Command line: ``rational-approx fit | study | certify | certify-table | claims``.

Every subcommand prints a table or, with ``--json``, one strict JSON object on stdout (no NaN / Infinity: null plus a
``<key>_note``); progress goes to stderr (``--no-progress`` silences it). Errors and exit statuses follow the
convention of :mod:`rational_approx.cliutil` (shared with ``rsae``): one line ``rational-approx <command>: error: ...``
on stderr, never a traceback (``--traceback`` shows it); 2 for usage or bad input (arguments, a package error such as
an invalid target, type or domain, an unwritable output path), 1 when the work failed (a fit that does not converge,
an I/O failure) or for an unexpected internal error, 130 on Ctrl-C. Output paths are checked before the work starts.

Examples
--------
    rational-approx fit --target abs --type 30,30 --method minimax --json
    rational-approx fit --target jumprelu --theta 0.5 --gap 0.05 --type 9,8
    rational-approx study --n-max 80 --json-out figures/error_vs_degree.json --figure figures/error_vs_degree.png
    rational-approx certify --target abs --type 20,20 --json
    rational-approx certify --target abs --type 80,80 --max-seconds 600 --json
    rational-approx certify-table --abs-n-max 80 --json-out benchmarks/results/certified_table.json
    rational-approx claims --markdown --figures figures
    rational-approx claims --only zolotarev --write-docs docs/theory_and_claims.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rational_approx.cliutil import RATIONAL_APPROX_EXIT_STATUS, OneLineParser, add_traceback_option, run_guarded
from rational_approx.errors import DegreeError, IllConditionedWarning, RationalApproxError
from rational_approx.representation.barycentric import parse_type
from rational_approx.representation.fit_result import json_ready
from rational_approx.representation.targets import TARGET_NAMES, resolve

__all__ = ["main", "build_parser", "dumps"]


def _add_progress_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--no-progress`` (the spelling of ``rsae``), and the older ``--quiet`` as a hidden alias."""
    p.add_argument("--no-progress", action="store_true", help=help)
    p.add_argument("--quiet", action="store_true", dest="no_progress", help=argparse.SUPPRESS)


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
    # The raw target, domain and type go to the fitter, which resolves and checks them once.
    kw = {"gap": args.gap, "theta": args.theta, "tau": args.tau}
    if args.method == "minimax":
        from rational_approx.fitting.minimax import minimax

        res = minimax(args.target, args.type, args.domain, symmetry=args.symmetry, maxiter=args.maxiter, **kw)
        extra = {"extremal_points": res.extremal_points.tolist()}
    elif args.method == "lawson":
        from rational_approx.fitting.lawson import lawson

        res = lawson(args.target, args.type, args.domain, **kw)
        extra = {}
    else:
        from rational_approx.fitting.aaa import aaa

        m, n = parse_type(args.type)
        if m != n:
            raise DegreeError("aaa produces type (n, n) approximants; pass --type n,n")
        res = aaa(args.target, args.domain, degree=n, **kw)
        extra = {}
    r, dom = res.r, res.domain
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        poles = r.poles()
        pq = r.to_monomial((dom.a, dom.b))
        # Monomial coefficients are meaningful only if they reproduce r more accurately than r approximates the
        # target.
        usable = bool(pq.conversion_error * max(1.0, float(np.max(np.abs(r(dom.sample(200)))))) < res.error)
    in_domain = r.real_poles_in(dom.intervals)
    return {
        **res.to_dict(),
        "type": list(parse_type(args.type)),
        "poles": _complex_list(poles),
        "real_poles_in_domain": in_domain.tolist(),
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


def check_output_file(path: str | None, what: str) -> None:
    """Refuse, before any work, an output path that is a folder or whose folder cannot be created or written (a probe
    file is created and removed there), so that nothing is computed in vain and no temporary file is left behind."""
    if path is None:
        return
    p = Path(path)
    if not str(path).strip():
        raise RationalApproxError(f"{what}: empty path")
    if p.is_dir():
        raise RationalApproxError(f"{what} {path!r} is a folder; give a file name, e.g. {str(p / 'out')!r}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=".probe-", delete=True):
            pass
    except OSError as exc:
        raise RationalApproxError(f"{what} {path!r} cannot be written: {exc.strerror or exc}") from exc


def _study(args: argparse.Namespace) -> dict:
    from rational_approx.verification.study import format_table, run_study

    if isinstance(args.n_max, bool) or args.n_max < 2:
        raise RationalApproxError(f"--n-max must be at least 2 (the study runs the even degrees 2, 4, …, n-max), got "
                                  f"{args.n_max}")
    check_output_file(args.json_out, "--json-out")
    check_output_file(args.figure, "--figure")

    rows, seconds = run_study(args.n_max, json_out=args.json_out, figure=args.figure, progress=not args.no_progress,
                              docs=args.write_docs)
    return {"seconds": seconds, "json_out": args.json_out, "figure": args.figure, "rows": rows,
            "table": format_table(rows)}


def _add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rational-approx certify``."""
    _add_target_arguments(parser)
    parser.add_argument("--type", required=True, help="m,n (numerator and denominator degrees)")
    parser.add_argument(
        "--source",
        choices=("auto", "highprec", "minimax"),
        default="auto",
        help="approximant. auto: multiprecision Remez for abs (n,n) and relu (2k+1,2k) on [-1,1], else "
        "double-precision minimax; highprec: the same, with the minimax refined at --prec bits; minimax: always "
        "double-precision minimax",
    )
    parser.add_argument("--rtol", type=float, default=1e-8, help="tightness of the upper bound, in (0, 1)")
    parser.add_argument("--prec", type=int, default=256, help="ball precision in bits (≥ 32)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="time limit of the whole command: the approximant is computed first (it cannot be cut "
                             "short), the upper bound's subdivision gets the rest; when that runs out the bracket is "
                             "printed as it stands (rigorous, wider than --rtol, marked \"partial\": true)")
    _add_progress_option(parser, "no progress messages on stderr")
    parser.add_argument("--coefficients", action="store_true", help="include the certified coefficients")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _certify(args: argparse.Namespace) -> dict:
    """``rational-approx certify``: compute an approximant, certify it, return the certificate as a dict."""
    from rational_approx.verification.certify import approximant_to_certify, certify, check_certify_options

    m, n = parse_type(args.type)
    check_certify_options(rtol=args.rtol, prec=args.prec, max_seconds=args.max_seconds)
    tgt, dom = resolve(args.target, args.domain, args.gap, theta=args.theta, tau=args.tau)

    def progress(text: str) -> None:
        if not args.no_progress:
            print(f"rational-approx certify: {text}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    approx, how = approximant_to_certify(tgt, (m, n), dom, source=args.source, prec=args.prec, progress=progress)
    t_approx = time.perf_counter() - t0
    progress(f"approximant ready ({t_approx:.1f} s); certifying: upper bound (Taylor-form subdivision) …")
    left = None if args.max_seconds is None else max(args.max_seconds - t_approx, 1e-3)
    cert = certify(tgt, approx, dom, type=(m, n), rtol=args.rtol, prec=args.prec, max_seconds=left,
                   progress=progress)
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
    parser = OneLineParser(prog="rational-approx", description="Rational approximation of sparsity gates.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

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
    _add_progress_option(p, "no progress bar")
    p.add_argument("--write-docs", default=None, metavar="MD",
                   help="write the table and the reading into the generated blocks of MD (docs/study.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_study, show=lambda out: print(out["table"] + f"\n\n{out['seconds']:.1f} s"))

    p = sub.add_parser("certify", help="certified two-sided bounds on the best error")
    _add_certify_arguments(p)
    p.set_defaults(run=_certify, show=lambda out: print(dumps(out, indent=1)))

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
    add_traceback_option(parser)
    return parser


def dumps(out: object, indent: int | None = None) -> str:
    """Strict JSON (no NaN / Infinity: null plus a ``<key>_note``) of a command's output."""
    return json.dumps(json_ready(out), indent=indent, allow_nan=False, default=str)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status of :mod:`rational_approx.cliutil` (0 success, 2 usage or bad
    input, 1 failed work or an internal error, 130 on Ctrl-C; a failure is one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse errors: one line and exit 2 (see OneLineParser)
    run: Callable = args.run
    caught: list[warnings.WarningMessage] = []

    def work() -> object:
        with np.errstate(all="ignore"), warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            try:
                return run(args)
            finally:
                caught.extend(recorded)

    status, out = run_guarded(f"rational-approx {args.command}", work, RATIONAL_APPROX_EXIT_STATUS,
                              own=(RationalApproxError,), traceback=args.traceback)
    if status:
        return status
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught
                    if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)})
    if notes and isinstance(out, dict):
        out["warnings"] = notes
    try:
        if getattr(args, "json", False) and not getattr(args, "markdown", False):
            out = {k: v for k, v in out.items() if k != "table"} if isinstance(out, dict) else out
            print(dumps(out))
        else:
            args.show(out)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0



if __name__ == "__main__":
    sys.exit(main())
