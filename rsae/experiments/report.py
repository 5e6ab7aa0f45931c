"""The markdown of a :func:`rsae.experiments.reproduce.reproduce` results dict (``results.md``)."""

from __future__ import annotations

from typing import Any

from rsae.experiments.scoreboard import scoreboard_markdown

__all__ = ["results_markdown"]


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown of a results dict (as written to ``results.json``): the scoreboard and the CE / probe facts."""
    lines = [scoreboard_markdown(results)]
    d = results["downstream"]
    if d.get("skipped"):
        lines.append(f"Downstream metrics not measured: {d['skipped']}.\n")
    else:
        p = d["probe"]
        lines.append(f"CE clean {d['ce_clean']:.4f}, zero-ablated {d['ce_zero']:.4f} nats ({d['n_predictions']} "
                     f"predictions); probe task `{p['task']}`: raw top-{p['k']} dims {p['raw_accuracy']:.3f}, all raw "
                     f"dims {p['raw_all_accuracy']:.3f} ({p['n_train']} / {p['n_test']} balanced train / test "
                     "tokens).\n")
    return "\n".join(lines)
