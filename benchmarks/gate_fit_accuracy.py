"""Accuracy of the gate fits as the network evaluates them (docs/rational_activation.md, "Gate fits").

For each gate (ReLU (3, 2); JumpReLU and TopK gate (9, 8), θ = τ = 0.5, gap 0.05): the safe-form coefficients of
``rational_approx.activation_coefficients``, their measured sup error against the minimax error, a ball-arithmetic
certificate (``ActivationCoefficients.certify``), and the sup error of ``rsae.core.rational`` on float32 inputs of
the design domain (200001 points per interval) with the default precision policy and with float32 forced.

    python benchmarks/gate_fit_accuracy.py > benchmarks/results/gate_fit_accuracy.json
    python benchmarks/gate_fit_accuracy.py --markdown benchmarks/results/gate_fit_accuracy.json   # the docs table
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from rational_approx import activation_coefficients, certify_activation
from rsae.core.rational import RationalActivation, configure_kernels, float32_error_bound


def kernel_error(fit, precision: str) -> float:
    act = RationalActivation(fit.a, fit.b, b0=fit.b0).float()
    t = np.concatenate([np.linspace(lo, hi, 200001) for lo, hi in fit.domain.intervals]).astype(np.float32)
    configure_kernels(precision=precision)
    try:
        y = act(torch.from_numpy(t)).detach().double().numpy()
    finally:
        configure_kernels(precision="auto")
    return float(np.max(np.abs(y - _gate(fit, t.astype(np.float64)))))


def _gate(fit, t: np.ndarray) -> np.ndarray:
    from rational_approx.representation.targets import resolve_target

    return resolve_target(fit.gate, **{k: v for k, v in fit.params.items() if k != "gap"}).f(t)


def markdown(path: str) -> str:
    """The table of docs/rational_activation.md from the JSON this script writes."""
    data = json.loads(open(path, encoding="utf-8").read())
    lines = ["| gate | type | b_0 | max coefficient | minimax error | safe-form error (rel.) | certified "
             "[lower, upper] (upper rel.) | float32 kernel (auto) | float32 forced |", "|---" * 9 + "|"]
    for gate, r in data.items():
        c = r["certificate"]
        lines.append(f"| {gate} | ({r['type'][0]}, {r['type'][1]}) | {r['b0']:.4g} | {r['max_abs_coefficient']:.3g} "
                     f"| {r['minimax_error']:.7g} | {r['error']:.7g} ({r['relative_to_minimax']:.1e}) "
                     f"| [{c['lower']:.7g}, {c['upper']:.7g}] ({r['certified_upper_relative_to_minimax']:.1e}) "
                     f"| {r['kernel_float32_sup_error_auto']:.5g} "
                     f"| {r['kernel_float32_sup_error_forced_float32']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        print(markdown(sys.argv[2]))
        return
    out = {}
    for gate in ("relu", "jumprelu", "topk"):
        fit = activation_coefficients(gate)
        cert = certify_activation(fit, rtol=1e-7)
        out[gate] = {
            "type": list(fit.type), "domain": [list(iv) for iv in fit.domain.intervals], "b0": fit.b0,
            "max_abs_coefficient": float(max(np.abs(fit.a).max(), np.abs(fit.b).max(), abs(fit.b0))),
            "error": fit.error, "minimax_error": fit.minimax_error,
            "relative_to_minimax": fit.error / fit.minimax_error - 1,
            "certificate": cert,
            "certified_upper_relative_to_minimax": cert["upper"] / fit.minimax_error - 1,
            "float32_error_bound": float32_error_bound(fit.a, fit.b, fit.b0),
            "kernel_float32_sup_error_auto": kernel_error(fit, "auto"),
            "kernel_float32_sup_error_forced_float32": kernel_error(fit, "float32"),
        }
    print(json.dumps(out, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
