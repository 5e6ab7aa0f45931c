r"""The scoreboard of the upgrade study: per-cell verdicts over seeds, totals, markdown tables, trade-off figure.

A *row* is one (family, sparsity level, teacher kind, variant). For each row the study has the teacher (one
model), RSAE-init (one model: the first seed's calibration), the fine-tuned RSAE for every seed and the
*control* — the teacher fine-tuned with the same steps, optimiser, schedule and data — for every seed. A *cell*
is one metric of one row (:data:`METRICS`).

Verdicts. With r_1 … r_S the RSAE's values over S seeds, c_1 … c_S the control's and t the teacher's, write
m(·) for the mean and sd(·) for the sample standard deviation (ddof = 1), and orient every metric so that
larger is better (d = m(r) − ref for "higher is better", ref − m(r) for "lower is better"). Then

.. math::

    \text{vs teacher: } d_T = \pm(m(r) - t), \quad s_T = \mathrm{sd}(r); \qquad
    \text{vs control: } d_C = \pm(m(r) - m(c)), \quad s_C = \max(\mathrm{sd}(r), \mathrm{sd}(c)),

and a comparison is a **win** when d > 2 s, a **loss** when d < −2 s, else a **tie** (with s = 0, differences
below 10⁻⁹ of the values — float rounding — are ties).
The cell's verdict is a win when RSAE wins against both the teacher and the control, a loss when it loses
against either, else a tie. A row whose RSAE breaks the L0 budget (L0 > budget × the teacher's L0 for any
seed) is *over budget*: its wins are reported as ``excluded`` and never counted as wins. A cell with a missing
value (e.g. no language model for the downstream metrics) is ``n/a`` and left out of the totals.

Totals follow the paper's wording: "RSAE beats the teacher in a/b reconstruction cells and c/d downstream
cells", and again against the control and against both (:func:`totals`).

Everything here is pure Python on the results dict written by :mod:`rsae.experiments.reproduce`, so the docs'
tables can be regenerated from ``figures/results.json`` alone (:func:`scoreboard_markdown`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "GROUPS", "SIGMAS", "RELATIVE_TIE", "build_board", "rescore", "compare", "combine", "score_row",
           "totals", "totals_sentences",
           "scoreboard_markdown", "comparison_markdown", "timing_markdown", "plot_tradeoff"]

METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("mse", "MSE", "lower", "reconstruction"),
    ("fvu", "FVU", "lower", "reconstruction"),
    ("l0", "L0", "lower", "sparsity"),
    ("alive_fraction", "alive", "higher", "sparsity"),
    ("delta_ce", "ΔCE", "lower", "downstream"),
    ("loss_recovered", "loss rec.", "higher", "downstream"),
    ("probe_accuracy", "probe acc", "higher", "downstream"),
)
"""(key, label, which direction is better, group) of every scoreboard cell."""
GROUPS = ("reconstruction", "sparsity", "downstream")
"""Cell groups of the totals."""
SIGMAS = 2.0
"""A difference counts when it exceeds this many standard deviations of the seed spread."""
_VERDICTS = ("win", "loss", "tie", "excluded", "n/a")
RELATIVE_TIE = 1e-3
"""Differences below this fraction of the larger value are ties whatever the spread: the scoreboard's resolution
where the seed spread is 0 (a frozen encoder gives every seed the same L0 and probe; a TopK L0 of 15.9998 against
16.0000 is 4 codes in 320,000, not a loss)."""


def _stats(values: Sequence[float | None]) -> dict[str, Any] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(vals) != len(values) or not vals:
        return None
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "sd": sd, "values": vals}


def compare(rsae: Sequence[float | None], reference: float | Sequence[float | None] | None, better: str,
            sigmas: float = SIGMAS) -> dict[str, Any]:
    """Verdict of the RSAE seeds against a reference (one value, or the control's seeds).

    Returns ``{"verdict", "difference", "spread"}``; ``difference`` is oriented so that > 0 favours RSAE.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    r = _stats(rsae)
    if reference is None:
        return {"verdict": "n/a", "difference": None, "spread": None}
    ref = _stats(reference if isinstance(reference, (list, tuple)) else [reference])
    if r is None or ref is None:
        return {"verdict": "n/a", "difference": None, "spread": None}
    diff = r["mean"] - ref["mean"]
    if better == "lower":
        diff = -diff
    # at zero spread, a difference below the scoreboard's resolution is not a difference
    margin = max(sigmas * max(r["sd"], ref["sd"]), RELATIVE_TIE * max(abs(r["mean"]), abs(ref["mean"])))
    spread = max(r["sd"], ref["sd"])
    verdict = "win" if diff > margin else "loss" if diff < -margin else "tie"
    return {"verdict": verdict, "difference": diff, "spread": spread}


def combine(vs_teacher: str, vs_control: str) -> str:
    """Cell verdict: win against both, loss against either, n/a if either is missing, else tie."""
    if "n/a" in (vs_teacher, vs_control):
        return "n/a"
    if "loss" in (vs_teacher, vs_control):
        return "loss"
    if vs_teacher == vs_control == "win":
        return "win"
    return "tie"


def score_row(row: dict[str, Any], l0_budget: float, sigmas: float = SIGMAS) -> dict[str, Any]:
    """Add ``cells`` (per-metric values and verdicts) and ``l0_budget`` to a study row and return it.

    ``row`` holds ``teacher`` and ``init`` (metric dicts) and ``rsae`` and ``control`` (lists of metric dicts,
    one per seed); ``row["over_budget_reported"]`` (optional) is the upgrade's own over-budget flag.
    """
    teacher, init, rsae, control = row["teacher"], row["init"], row["rsae"], row["control"]
    rsae_l0 = [m.get("l0") for m in rsae]
    limit = l0_budget * teacher["l0"]
    over = any(v is not None and v > limit * (1 + 1e-9) for v in rsae_l0) or bool(row.get("over_budget_reported"))
    row["l0_budget"] = {"budget": l0_budget, "teacher_l0": teacher["l0"], "limit": limit,
                        "rsae_l0_max": max((v for v in rsae_l0 if v is not None), default=None), "over_budget": over}
    cells = {}
    for key, _label, better, group in METRICS:
        r = [m.get(key) for m in rsae]
        c = [m.get(key) for m in control]
        vt = compare(r, teacher.get(key), better, sigmas)
        vc = compare(r, c, better, sigmas)
        verdicts = {"vs_teacher": vt["verdict"], "vs_control": vc["verdict"]}
        verdicts["verdict"] = combine(verdicts["vs_teacher"], verdicts["vs_control"])
        if over:
            verdicts = {k: "excluded" if v == "win" else v for k, v in verdicts.items()}
        cells[key] = {"group": group, "better": better, "teacher": teacher.get(key), "init": init.get(key),
                      "rsae": _stats(r), "control": _stats(c), "difference_vs_teacher": vt["difference"],
                      "difference_vs_control": vc["difference"], "spread_vs_teacher": vt["spread"],
                      "spread_vs_control": vc["spread"], **verdicts}
    row["cells"] = cells
    return row


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of verdicts per comparison (``vs_teacher``, ``vs_control``, ``verdict`` = both) and group.

    Each entry has ``win``, ``loss``, ``tie``, ``excluded``, ``n/a`` and ``cells`` (all but ``n/a``).
    """
    out: dict[str, Any] = {}
    for comparison in ("vs_teacher", "vs_control", "verdict"):
        out[comparison] = {}
        for group in GROUPS:
            counts = dict.fromkeys(_VERDICTS, 0)
            for row in rows:
                for cell in row["cells"].values():
                    if cell["group"] == group:
                        counts[cell[comparison]] += 1
            counts["cells"] = sum(counts[v] for v in _VERDICTS if v != "n/a")
            out[comparison][group] = counts
    return out


def build_board(rows: list[dict[str, Any]], seeds: Sequence[int], l0_budget: float,
                variants: Sequence[str]) -> dict[str, Any]:
    """The results' ``scoreboard``: every row scored (:func:`score_row`, in place), the totals and the totals per
    variant, with the rules they were scored by (``sigmas``, ``relative_tie``, ``l0_budget``)."""
    for row in rows:
        score_row(row, l0_budget)
    return {"seeds": list(seeds), "sigmas": SIGMAS, "relative_tie": RELATIVE_TIE, "l0_budget": l0_budget,
            "rows": rows, "totals": totals(rows),
            "totals_by_variant": {v: totals([r for r in rows if r["variant"] == v]) for v in variants}}


def rescore(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with its scoreboard rebuilt from its rows by the current rules (:func:`build_board`); the
    measured values are untouched. ``rsae study --markdown RESULTS --rescore`` writes it back."""
    board = results["scoreboard"]
    variants = list(dict.fromkeys(r["variant"] for r in board["rows"]))
    return {**results, "scoreboard": build_board(board["rows"], board["seeds"], board["l0_budget"], variants)}


def totals_sentences(t: dict[str, Any]) -> list[str]:
    """The totals in the paper's form, one sentence per comparison."""
    names = {"vs_teacher": "the teacher", "vs_control": "the control", "verdict": "both the teacher and the control"}
    lines = []
    for comparison, name in names.items():
        g = t[comparison]
        parts = [f"{g[group]['win']}/{g[group]['cells']} {group} cells" for group in GROUPS]
        losses = sum(g[group]["loss"] for group in GROUPS)
        excluded = sum(g[group]["excluded"] for group in GROUPS)
        lines.append(f"RSAE beats {name} in {parts[0]}, {parts[2]} and {parts[1]}; it loses {losses} cells"
                     + (f" ({excluded} wins excluded: over the L0 budget)" if excluded else "") + ".")
    return lines


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** -(digits - 1)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _fmt_stats(s: dict[str, Any] | None) -> str:
    return "—" if s is None else f"{_fmt(s['mean'])} ± {_fmt(s['sd'])}"


def _convergence_text(conv: dict[str, Any] | None) -> str:
    if not conv or conv.get("converged") is None:
        return "unknown" + (f" ({conv['reason']})" if conv and conv.get("reason") else "")
    flag = "yes" if conv["converged"] else "**no**"
    return (f"{flag}: {_fmt(conv['mse_three_quarters'])} @ {conv['step_three_quarters']} → {_fmt(conv['mse_end'])} @ "
            f"{conv['steps']} ({100 * conv['improvement']:+.2f} %)"
            + (f"; L0 {_fmt(conv['l0_three_quarters'])} → {_fmt(conv['l0_end'])}" if "l0_end" in conv else ""))


def scoreboard_markdown(results: dict[str, Any]) -> str:
    """The scoreboard's markdown (totals, row facts, cells) generated from a results dict alone."""
    board = results["scoreboard"]
    lines = [f"Seeds per RSAE and per control: {', '.join(str(s) for s in board['seeds'])}; a cell is a win when "
             f"RSAE beats both the teacher and the control by more than {board['sigmas']:g} sd of the seed spread"
             + (f" (and by more than {100 * board['relative_tie']:g} % of the value, the resolution at zero spread)"
                if board.get("relative_tie", 0) >= 1e-6 else "")
             + f", a loss when it is worse than either by that much; rows over the L0 budget "
             f"({board['l0_budget']:g} × the teacher's L0) have their wins excluded.", ""]
    lines += [f"* {s}" for s in totals_sentences(board["totals"])]
    for variant, t in board["totals_by_variant"].items():
        lines.append(f"* variant `{variant}`: " + " ".join(totals_sentences(t)[2:]))
    lines += ["", "| row | text | teacher converged (held-out MSE at 3/4 → end, change) | dead latents | seeds "
              "| control | RSAE L0 max / budget | over budget |", "|---|---|---|---|---|---|---|---|"]
    for row in board["rows"]:
        b = row["l0_budget"]
        lines.append(f"| {row['key']} | {row['text']} | {_convergence_text(row['convergence'])} "
                     f"| {100 * row['teacher_dead_fraction']:.1f} % | {len(row['seeds'])} "
                     f"| {'yes' if row['control_present'] else '**no**'} | {_fmt(b['rsae_l0_max'], 2)} / "
                     f"{_fmt(b['limit'], 2)} | {'**yes**' if b['over_budget'] else 'no'} |")
    lines += ["", "| row | cell | teacher | RSAE-init | RSAE (mean ± sd) | control (mean ± sd) | vs teacher "
              "| vs control | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for row in board["rows"]:
        for key, label, _better, _group in METRICS:
            c = row["cells"][key]
            verdict = f"**{c['verdict']}**" if c["verdict"] in ("win", "loss") else c["verdict"]
            lines.append(f"| {row['key']} | {label} | {_fmt(c['teacher'])} | {_fmt(c['init'])} "
                         f"| {_fmt_stats(c['rsae'])} | {_fmt_stats(c['control'])} | {c['vs_teacher']} "
                         f"| {c['vs_control']} | {verdict} |")
    return "\n".join(lines) + "\n"


def plot_tradeoff(results: dict[str, Any], path: str | Path) -> None:
    """Held-out L0 against MSE for teacher, RSAE (one marker per variant) and control (mean ± sd over seeds), one
    panel per family. A point whose MSE exceeds twice the panel's largest teacher MSE is drawn at the top edge with
    its value written beside it (an off-scale row must not squash the others)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["scoreboard"]["rows"]
    families = [f for f in ("relu", "jumprelu", "topk", "batchtopk") if any(r["family"] == f for r in rows)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, max(len(families), 1), figsize=(4.4 * max(len(families), 1), 4.2), squeeze=False)
    rsae_styles = {"magnitude": ("^", "C3"), "paper": ("D", "C1")}
    styles = {"teacher": ("o", "k", "teacher"), "control": ("s", "C0", "control (mean ± sd)")}
    for ax, family in zip(axes[0], families):
        panel = [r for r in rows if r["family"] == family]
        cap = 2.0 * max(r["cells"]["mse"]["teacher"] for r in panel)
        points: list[tuple[float, float, float, float, str, str, bool]] = []
        labelled: set[str] = set()
        for row in panel:
            mse, l0 = row["cells"]["mse"], row["cells"]["l0"]
            hollow = row["teacher_kind"] != "trained"
            points.append((l0["teacher"], mse["teacher"], 0.0, 0.0, "o", "k", hollow))
            if row["teacher_name"] not in labelled:
                labelled.add(row["teacher_name"])
                ax.annotate(f"{row['sparsity_label']} {row['teacher_kind']}", (l0["teacher"], mse["teacher"]),
                            textcoords="offset points", xytext=(5, 5), fontsize=7)
            for model in ("rsae", "control"):
                if mse[model] is None or l0[model] is None:
                    continue
                marker, colour = rsae_styles.get(row["variant"], ("^", "C3")) if model == "rsae" else \
                    styles["control"][:2]
                points.append((l0[model]["mean"], mse[model]["mean"], l0[model]["sd"], mse[model]["sd"], marker,
                               colour, hollow))
        shown = [y for _x, y, *_ in points if y <= cap]
        top = max(shown) if shown else cap
        for x, y, dx, dy, marker, colour, hollow in points:
            off = y > cap
            ax.errorbar(x, top * 1.04 if off else y, xerr=dx, yerr=0.0 if off else dy, marker=marker, color=colour,
                        ms=6, capsize=3, ls="none", mfc="white" if hollow else colour)
            if off:
                ax.annotate(f"off scale: MSE {y:.4g} ↑", (x, top * 1.04), textcoords="offset points",
                            xytext=(6, -3), fontsize=7, color=colour)
        ax.margins(x=0.3, y=0.12)
        ax.set_title(family, fontsize=10)
        ax.set_xlabel("held-out L0 (non-zero codes per token)", fontsize=9)
        ax.set_ylabel("held-out MSE (‖x/s − x̂/s‖² per token)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", color="k", ls="none", label="teacher")]
    handles += [plt.Line2D([], [], marker=rsae_styles.get(v, ("^", "C3"))[0], color=rsae_styles.get(v, ("^", "C3"))[1],
                           ls="none", label=f"RSAE, {v} (mean ± sd)") for v in variants]
    handles.append(plt.Line2D([], [], marker="s", color="C0", ls="none", label=styles["control"][2]))
    handles.append(plt.Line2D([], [], marker="o", color="grey", mfc="white", ls="none",
                              label="hollow: teacher with dead latents"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rel(s: dict[str, Any] | None, reference: float | None) -> str:
    return "—" if s is None or not reference else f"{100 * (s['mean'] / reference - 1):+.2f} %"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def comparison_markdown(results: dict[str, Any]) -> str:
    """Per row: MSE teacher → RSAE-init → RSAE and the control, loss recovered — the paper's columns."""
    lines = ["| row | MSE teacher → init → RSAE (change) | control MSE (change) | L0 teacher → RSAE / control "
             "| loss recovered teacher → RSAE / control |", "|---|---|---|---|---|"]
    for row in results["scoreboard"]["rows"]:
        c, lo, lr = row["cells"]["mse"], row["cells"]["l0"], row["cells"]["loss_recovered"]
        t = c["teacher"]
        lines.append(
            f"| {row['key']} | {_fmt(t)} → {_fmt(c['init'])} → {_fmt_stats(c['rsae'])} ({_rel(c['rsae'], t)}) "
            f"| {_fmt_stats(c['control'])} ({_rel(c['control'], t)}) "
            f"| {_fmt(lo['teacher'], 2)} → {_fmt(lo['rsae']['mean'] if lo['rsae'] else None, 2)} / "
            f"{_fmt(lo['control']['mean'] if lo['control'] else None, 2)} "
            f"| {_pct(lr['teacher'])} → {_pct(lr['rsae']['mean'] if lr['rsae'] else None)} / "
            f"{_pct(lr['control']['mean'] if lr['control'] else None)} |")
    return "\n".join(lines) + "\n"


def timing_markdown(results: dict[str, Any]) -> str:
    """Wall time of every stage of the run (from the stage markers; ``skipped`` stages were found complete)."""
    lines = ["| stage | seconds | note |", "|---|---|---|"]
    total = 0.0
    for name, s in results["stages"].items():
        total += s["seconds"]
        lines.append(f"| {name} | {s['seconds']:.1f} | {'found complete (earlier run)' if s['skipped'] else ''} |")
    lines.append(f"| **all stages** | **{total:.1f}** | |")
    return "\n".join(lines) + "\n"
