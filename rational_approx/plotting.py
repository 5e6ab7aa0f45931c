"""Every figure of ``rational_approx``: the error-versus-degree study and the theory figures.

matplotlib is imported inside each function (Agg backend), so importing the package never needs a display or
matplotlib itself. Data come from the stages (:mod:`rational_approx.verification.study`,
:mod:`rational_approx.verification.claims`, :mod:`rational_approx.verification.theory`,
:mod:`rational_approx.verification.rates`); this module only draws.

Example
-------
    python -c "from rational_approx.plotting import make_figures; print(make_figures('figures'))"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rational_approx.verification.study import StudyRow

__all__ = ["plot_study", "make_figures", "plot_stahl_ratio"]


def plot_study(rows: Sequence[StudyRow], path: str | Path) -> Path:
    """Log-scale figure of the study (errors against n) saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r.n for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.semilogy(n, [r.abs_error for r in rows], "o-", ms=3, label=r"best rational $E_{n,n}(|x|)$")
    ax.semilogy(n, [r.relu_error for r in rows], "s-", ms=3, label=r"best rational $E_{n,n}(\mathrm{ReLU})$")
    ax.semilogy(n, [r.poly_error for r in rows], "^-", ms=3, label=r"best polynomial $E_n(|x|)$")
    ax.semilogy(n, [r.newman_bound for r in rows], "--", label=r"Newman bound $3e^{-\sqrt{n}}$")
    ax.semilogy(n, [r.stahl_asymptote for r in rows], ":", lw=2, label=r"Stahl $8e^{-\pi\sqrt{n}}$")
    ax.semilogy(n, [r.bernstein_asymptote for r in rows], "-.", label=r"Bernstein $\beta/n$")
    ax.set_xlabel(r"degree $n$")
    ax.set_ylabel(r"sup error on $[-1,1]$")
    ax.set_title(r"Rational vs polynomial approximation of $|x|$ and ReLU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")  # the lower left is empty: every curve starts high at small n
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_figures(outdir: str = "figures", *, n_max: int = 56) -> list[str]:
    """Write error_vs_degree_rates.png, degree_vs_eps_delta.png and reverse_gap.png into ``outdir``.

    Every curve is computed here (minimax for |x| up to type (n_max, n_max), Newman, the polynomial Remez,
    Zolotarev, the gate construction and the reverse-gap bounds); returns the paths written.
    """
    import matplotlib

    from rational_approx.fitting.minimax import minimax
    from rational_approx.verification.rates import (
        degree_needed,
        fit_log_squared,
        gate_degree_needed,
        reverse_gap_constant,
        reverse_gap_units,
    )
    from rational_approx.verification.theory import (
        BERNSTEIN_BETA,
        best_polynomial_abs,
        newman_rational,
        stahl_asymptote,
        zolotarev_asymptote,
        zolotarev_sign,
    )

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    # 1. error vs degree with all the rates
    ns = np.arange(2, n_max + 1, 2)
    abs_err = {n: minimax("abs", (n, n)).error for n in ns.tolist()}
    fig, ax = plt.subplots(figsize=(9.6, 4.4))
    ax.semilogy(ns, [abs_err[n] for n in ns], "o", ms=3, label=r"best rational $E_{n}(|x|)$ (minimax)")
    nn = np.linspace(1, n_max, 200)
    ax.semilogy(nn, stahl_asymptote(nn), "-", lw=1, label=r"Stahl $8e^{-\pi\sqrt{n}}$")
    ax.semilogy(ns, [newman_rational(int(n)).error() for n in ns], "s", ms=3, label="Newman's rational (measured)")
    ax.semilogy(nn, 3 * np.exp(-np.sqrt(nn)), "--", lw=1, label=r"Newman bound $3e^{-\sqrt{n}}$")
    ax.semilogy(ns, [best_polynomial_abs(int(n)).error for n in ns], "^", ms=3, label="best polynomial (Remez)")
    ax.semilogy(nn, BERNSTEIN_BETA / nn, ":", lw=1, label=r"Bernstein $\beta/n$")
    for ell, mk in ((0.1, "v"), (0.01, "d")):
        zs = np.arange(1, 25)
        ax.semilogy(zs, [zolotarev_sign(int(n), ell).error for n in zs], mk, ms=3,
                    label=rf"Zolotarev sign, $\ell = {ell}$ (exact)")
        ax.semilogy(zs, zolotarev_asymptote(zs, ell), "-", lw=0.6, color="gray" if ell == 0.1 else "silver",
                    label=rf"$4e^{{-\pi n K(\ell)/K(\ell')}}$, $\ell = {ell}$")
    ax.set_xlabel(r"degree $n$ (type $(n, n)$)")
    ax.set_ylabel(r"sup error on $[-1, 1]$ (sign: on $[-1,-\ell]\cup[\ell,1]$)")
    ax.set_ylim(1e-14, 2)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("Error vs degree: measured best errors and the classical rates", fontsize=9)
    fig.tight_layout()
    paths.append(str(out / "error_vs_degree_rates.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    # 2. degree needed vs ε and δ
    relu = {n + 1: e / 2 for n, e in abs_err.items()}
    eps = np.logspace(-1.5, -9, 16)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    need = [degree_needed(relu, e) for e in eps]
    keep = [i for i, v in enumerate(need) if v is not None]
    e_k, n_k = eps[keep], [need[i] for i in keep]
    alpha, beta = fit_log_squared(e_k, n_k)
    L = np.log(1 / e_k)
    a1.plot(L, n_k, "o", ms=4, label=r"measured: numerator degree of the best $(n+1, n)$ fit")
    a1.plot(L, (alpha * L + beta) ** 2, "-", label=rf"fit $n = ({alpha:.3f}\,\ln(1/\varepsilon) + {beta:.2f})^2$")
    a1.set_xlabel(r"$\ln(1/\varepsilon)$")
    a1.set_ylabel("degree needed")
    a1.set_title(r"ReLU on $[-1, 1]$: $O(\log^2(1/\varepsilon))$", fontsize=9)
    a1.legend(fontsize=7, loc="upper left")
    for delta in (0.1, 0.01, 0.001):
        e2 = np.logspace(-1, -10, 10)
        a2.plot(np.log(1 / e2), [gate_degree_needed(e, delta) for e in e2], "o-", ms=3, label=rf"$\delta = {delta}$")
    a2.set_xlabel(r"$\ln(1/\varepsilon)$")
    a2.set_ylabel(r"$n$ (type $(n+1, n)$)")
    a2.set_title(r"gate $x\,H(x-0.5)$, gap $\delta$: $O(\log(1/\varepsilon)\log(1/\delta))$", fontsize=9)
    a2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    paths.append(str(out / "degree_vs_eps_delta.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    # 3. the reverse gap
    fig, ax = plt.subplots(figsize=(9.6, 4.4))
    eps_r = np.logspace(-1.5, -4.5, 7)
    for eta in (0.3, 0.1, 0.03, 0.01):
        pts = reverse_gap_units(eta, eps_r, grid_points=4001)
        N = [p.units_lower for p in pts]
        line = ax.loglog(N, eps_r, "o", ms=4, label=rf"$\eta = {eta}$: lower bound (any $N$-unit sum)")[0]
        ax.loglog(N, [p.relu_error for p in pts], "-", color=line.get_color(), lw=1,
                  label=rf"$\eta = {eta}$: achieved by $N$ ReLU units")
    Nr = np.array([3, 300])
    c0 = reverse_gap_constant(1e-6)  # (∫√|g''|)²/16, the η → 0 limit
    ax.loglog(Nr, c0 / (Nr + 1.0) ** 2, "k:", lw=1, label=rf"${c0:.2f}/(N+1)^2$ ($\eta \to 0$ limit)")
    ax.set_xlabel(r"number of units $N$")
    ax.set_ylabel(r"sup error $\varepsilon$ on $[-1, 1]$")
    ax.set_title(r"$R^*_\eta = \eta^2/(x^2+\eta^2)$: type $(0,2)$ exactly; units need $N \propto \varepsilon^{-1/2}$",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    paths.append(str(out / "reverse_gap.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def plot_stahl_ratio(n: Sequence[int], ratio: Sequence[float], path: str | Path, *,
                     fit: tuple[Sequence[float], int] | None = None) -> Path:
    """ρ_n = E_n e^{π√n}/8 against n^{−1/2} (Stahl 1993: ρ_n → 1), saved to ``path``.

    ``fit``: (polynomial coefficients in n^{−1/2}, highest first; smallest n fitted) — drawn from that n to
    n = ∞ (n^{−1/2} = 0), where its value is the extrapolated limit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = 1.0 / np.sqrt(np.asarray(n, dtype=float))
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    ax.plot(x, ratio, "o", ms=3, label=r"$\rho_n = E_n\,e^{\pi\sqrt{n}}/8$ (multiprecision Remez)")
    if fit is not None:
        coef, n0 = fit
        xf = np.linspace(0.0, 1.0 / np.sqrt(n0), 100)
        limit = float(np.polyval(coef, 0.0))
        ax.plot(xf, np.polyval(coef, xf), "-", color="C1", lw=1.2,
                label=rf"fit in powers of $n^{{-1/2}}$ over $n \geq {n0}$, extended to $n = \infty$")
        ax.plot([0.0], [limit], "*", color="C1", ms=10, label=rf"extrapolated limit {limit:.4f}")
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="Stahl (1993): limit 1")
    ax.set_xlabel(r"$n^{-1/2}$   ($n$ = degree, type $(n, n)$; $n = \infty$ at the left edge)")
    ax.set_ylabel(r"$E_n\,e^{\pi\sqrt{n}}/8$")
    ax.set_xlim(left=-0.01)
    ax.set_title(r"Best rational approximation of $|x|$ on $[-1, 1]$: Stahl's asymptote", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
