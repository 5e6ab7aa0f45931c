"""Locating the extrema of an error function e = f − r on a domain, to machine precision in the abscissa.

Reading a sup norm off a fixed grid underestimates it (the peak falls between grid points), and on a kink-type
target the peaks of a good rational approximant sit at exponentially small distances from the kink, below any
uniform grid's spacing.
The search here is local and adaptive instead:

1. Break the domain at a caller-supplied set of points (typically the current reference set of a Remez iteration, the
   target's singular points and the interval end points). Consecutive break points bracket at most a few extrema of e.
2. Sample each piece at Chebyshev-distributed points (so its ends are resolved however short the piece is), take every
   discrete local maximum of |e| (and every piece end point) as a candidate.
3. Polish each interior candidate by golden-section search on its bracketing neighbours, vectorised over candidates.

The result is every local extremum of |e| with its signed value, sorted by abscissa.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rational_approx.representation.domain import Domain

__all__ = ["local_extrema", "sup_error", "alternating_subset"]

_GOLD = (np.sqrt(5.0) - 1.0) / 2.0


def _polish(err: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, sgn: np.ndarray,
            iters: int = 60) -> np.ndarray:
    """Golden-section maximisation of sgn·e on [lo, hi], vectorised over intervals."""
    a, b = lo.copy(), hi.copy()
    c = b - _GOLD * (b - a)
    d = a + _GOLD * (b - a)
    fc = sgn * err(c)
    fd = sgn * err(d)
    for _ in range(iters):
        left = fc >= fd  # maximum in [a, d]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        new_c = b - _GOLD * (b - a)
        new_d = a + _GOLD * (b - a)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        f_eval = sgn * err(np.where(left, new_c, new_d))
        fd_next = np.where(left, fc, f_eval)
        fc_next = np.where(left, f_eval, fd)
        c, d, fc, fd = c_next, d_next, fc_next, fd_next
        if np.all(b - a <= 4e-16 * np.maximum(np.abs(a), np.abs(b)) + 1e-300):
            break
    x = np.where(fc >= fd, c, d)
    # Golden section on a flat maximum resolves x only to ≈ √(rounding/curvature); a parabola through three points
    # a small step apart, whose spread in e is far above rounding, places the vertex an order of magnitude closer.
    for s in (1e-2, 1e-3):
        step = s * (hi - lo)
        em, e0, ep = sgn * err(x - step), sgn * err(x), sgn * err(x + step)
        curv = em - 2.0 * e0 + ep
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curv < 0, 0.5 * step * (em - ep) / curv, 0.0)
        cand = np.clip(x + shift, lo, hi)
        better = sgn * err(cand) >= e0
        x = np.where(better & np.isfinite(cand), cand, x)
    return x


def local_extrema(
    err: Callable[[np.ndarray], np.ndarray],
    domain: Domain,
    breakpoints: np.ndarray | None = None,
    *,
    per_piece: int = 24,
) -> tuple[np.ndarray, np.ndarray]:
    """All local extrema of |err| on ``domain``: (abscissae, signed values), sorted by abscissa.

    Parameters
    ----------
    err : vectorised callable, the error function e(x).
    domain : the domain (interval or union); every interval end point is a candidate.
    breakpoints : points that split the domain into pieces each holding few extrema (e.g. a Remez reference set).
    per_piece : samples per piece before polishing.
    """
    xs, vs = [], []
    bp = np.asarray([] if breakpoints is None else breakpoints, dtype=float)
    s = 0.5 - 0.5 * np.cos(np.pi * np.arange(per_piece) / (per_piece - 1))  # Chebyshev points on [0, 1]
    for a, b in domain.intervals:
        inner = bp[(bp > a) & (bp < b)]
        edges = np.unique(np.concatenate([[a], inner, [b]]))
        lo, hi = edges[:-1], edges[1:]
        grid = lo[:, None] + (hi - lo)[:, None] * s[None, :]
        grid[:, 0], grid[:, -1] = lo, hi
        g = grid.ravel()
        # drop duplicated piece ends so that a peak exactly at a break point is seen once
        g = np.unique(g)
        e = err(g)
        ae = np.abs(e)
        n = g.size
        is_max = np.zeros(n, dtype=bool)
        is_max[1:-1] = (ae[1:-1] >= ae[:-2]) & (ae[1:-1] >= ae[2:])
        # an interval end point is always a local extremum of the signed error (e is monotone next to it), even
        # when |e| grows away from it through a sign change, and alternation may need it
        is_max[0] = is_max[-1] = True
        idx = np.nonzero(is_max)[0]
        interior = idx[(idx > 0) & (idx < n - 1)]
        ends = idx[(idx == 0) | (idx == n - 1)]
        if interior.size:
            sgn = np.sign(e[interior])
            sgn[sgn == 0] = 1.0
            xp = _polish(err, g[interior - 1], g[interior + 1], sgn)
            xs.append(xp)
            vs.append(err(xp))
        xs.append(g[ends])
        vs.append(e[ends])
    x = np.concatenate(xs)
    v = np.concatenate(vs)
    order = np.argsort(x, kind="stable")
    x, v = x[order], v[order]
    keep = np.concatenate([[True], np.diff(x) > 0])
    return x[keep], v[keep]


def sup_error(err: Callable[[np.ndarray], np.ndarray], domain: Domain,
              breakpoints: np.ndarray | None = None) -> tuple[float, float]:
    """max |err| over the domain located by :func:`local_extrema`: returns (value, abscissa)."""
    x, v = local_extrema(err, domain, breakpoints)
    i = int(np.argmax(np.abs(v)))
    return float(abs(v[i])), float(x[i])


def alternating_subset(x: np.ndarray, v: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Choose ``count`` points from candidate extrema (x sorted) with alternating signs and large |v|.

    Runs of equal sign are merged to their largest member; then, while too many remain, the weakest end point is dropped
    when it is the overall weakest, else the adjacent pair holding the weakest point is dropped (this keeps
    alternation).
    Returns None when fewer than ``count`` alternations exist.
    """
    sg = np.sign(v)
    sg[sg == 0] = 1.0
    xs, vs, ss = [x[0]], [v[0]], [sg[0]]
    for xi, vi, si in zip(x[1:], v[1:], sg[1:]):
        if si == ss[-1]:
            if abs(vi) > abs(vs[-1]):
                xs[-1], vs[-1] = xi, vi
        else:
            xs.append(xi)
            vs.append(vi)
            ss.append(si)
    xs, vs = list(xs), list(vs)
    if len(xs) < count:
        return None
    while len(xs) > count:
        a = np.abs(vs)
        k = int(np.argmin(a))
        if len(xs) - count == 1 or k == 0 or k == len(xs) - 1:
            if len(xs) - count == 1 and 0 < k < len(xs) - 1:
                k = 0 if a[0] <= a[-1] else len(xs) - 1
            del xs[k], vs[k]
        else:
            j = k - 1 if a[k - 1] < a[k + 1] else k + 1
            for i in sorted((k, j), reverse=True):
                del xs[i], vs[i]
    return np.array(xs), np.array(vs)
