"""Figures of :func:`rsae.experiments.reproduce.reproduce` (the L0–MSE trade-off is
:func:`rsae.experiments.scoreboard.plot_tradeoff`): the gates against their safe-Padé fits and the learned φ
against the teacher's map."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsae.core.io import load_sae


def _gate_function(gate: str, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The gate on t ∈ [−1, 1] (design units of :func:`rational_approx.activation_coefficients`)."""
    if gate == "relu":
        return lambda t: np.maximum(t, 0.0)
    threshold = params.get("theta", params.get("tau"))
    return lambda t: np.where(t > threshold, t, 0.0)


def _plot_gate_fits(fits: dict[str, dict[str, Any]], path: Path) -> None:
    """Each gate (black) and its safe-Padé fit (red) on the design interval, the gap around a jump shaded; below,
    the error r(t) − g(t) on the design set (log scale), so that a sup error of 1e-4 is visible at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rational_approx.representation.safepade import SafePade

    t = np.linspace(-1, 1, 2001)
    fig, axes = plt.subplots(2, len(fits), figsize=(4.0 * len(fits), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    titles = {"relu": "ReLU: max(t, 0)", "jumprelu": "JumpReLU: t·H(t − θ)", "topk": "TopK gate: t·H(t − τ)"}
    for col, (gate, fit) in enumerate(fits.items()):
        top, bottom = axes[0][col], axes[1][col]
        g = _gate_function(gate, fit["params"])(t)
        r = SafePade(np.array(fit["a"]), np.array(fit["b"]), b0=float(fit.get("b0", 0.0)))(t)
        inside = np.zeros_like(t, dtype=bool)
        for lo, hi in fit["domain"]:
            inside |= (t >= lo) & (t <= hi)
        for (_, hi), (lo, _) in zip(fit["domain"][:-1], fit["domain"][1:]):
            for ax in (top, bottom):
                ax.axvspan(hi, lo, color="0.85", lw=0, label="gap (excluded)" if ax is top else None)
        top.plot(t, g, "k-", lw=1.2, label="gate g(t)")
        top.plot(t, r, "C3--", lw=1.2, label=f"safe-Padé r(t), type {tuple(fit['type'])}")
        params = ", ".join(f"{k} = {v:g}" for k, v in fit["params"].items())
        top.set_title(f"{titles.get(gate, gate)}{' (' + params + ')' if params else ''}", fontsize=10)
        top.set_ylabel("output (design units)")
        top.legend(fontsize=8, loc="upper left")
        err = np.where(inside, np.abs(r - g), np.nan)
        bottom.semilogy(t, err, "C3-", lw=0.8)
        bottom.axhline(fit["error"], color="k", lw=0.6, ls=":")
        bottom.set_ylabel("|r(t) − g(t)| on the design set")
        bottom.set_xlabel("t (design units: h / C_in)")
        bottom.set_title(f"sup error {fit['error']:.3g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_shapes(shapes: list[tuple[str, str, Path]], path: Path) -> None:
    """One panel per fine-tuned RSAE (rows: variants, columns: families): its φ on latent 0 against the teacher's
    map, in the SAE's pre-activation units. The magnitude variant keeps the teacher's hard gate (φ dotted where the
    gate closes); the paper variant's φ is the whole map, jumping at C_in·θ_design for JumpReLU and TopK."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rsae.experiments.upgrade import DESIGN_THRESHOLD

    variants = list(dict.fromkeys(name.rsplit("(", 1)[-1].rstrip(")") for name, _, _ in shapes)) or ["-"]
    families = list(dict.fromkeys(family for _, family, _ in shapes)) or ["-"]
    fig, axes = plt.subplots(len(variants), len(families), figsize=(4.2 * len(families), 3.4 * len(variants)),
                             squeeze=False)
    for name, family, sae_path in shapes:
        ax = axes[variants.index(name.rsplit("(", 1)[-1].rstrip(")"))][families.index(family)]
        act = load_sae(sae_path).activation
        if not hasattr(act, "magnitude"):
            continue
        with torch.no_grad():
            c_in = float(act.phi.log_c_in.detach().reshape(-1)[0].exp())
            h = torch.linspace(-c_in, c_in, 801, dtype=torch.float32)
            y = act.magnitude(h, torch.zeros(h.shape, dtype=torch.long)).numpy()
            smooth = act.gate == "none"
            if smooth:
                cut = 0.0 if family == "relu" else DESIGN_THRESHOLD * c_in
            else:
                cut = float(act.log_threshold.detach().reshape(-1)[0].exp()) if family == "jumprelu" else 0.0
        hn = h.numpy()
        ax.plot(hn, np.where(hn > cut, hn, 0), "k-", lw=1.2, label="teacher's map h·H(h − θ)")
        open_ = hn > cut if not smooth else np.ones_like(hn, dtype=bool)
        ax.plot(hn[open_], y[open_], "C3--", lw=1.4, label="RSAE φ(h)" + ("" if smooth else ", gate open"))
        if not smooth:
            ax.plot(hn[~open_], y[~open_], "C3:", lw=1, label="φ(h) where the gate gives 0")
        target = np.where(hn > cut, hn, 0)
        deviation = float(np.max(np.abs(y[open_] - target[open_]))) if open_.any() else 0.0
        ax.set_title(f"{name}: max |φ(h) − map| = {deviation:.2f}", fontsize=9)
        ax.set_xlabel("pre-activation h of latent 0 (store units)")
        ax.set_ylabel("code z")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
