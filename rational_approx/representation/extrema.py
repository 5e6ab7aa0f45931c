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

from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import numpy as np
from flint import arb

from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import mpf_from_arb

__all__ = ["local_extrema", "sup_error", "alternating_indices"]

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


def _exact_scalar(v: Any) -> Any:
    """v as a number that compares exactly: float → float, mpmath mpf → itself, arb ball → its midpoint (mpf)."""
    if isinstance(v, arb):
        return mpf_from_arb(v)
    if isinstance(v, mpmath.mpf):
        return v
    return float(v)


def alternating_indices(values: Sequence[Any] | np.ndarray, count: int | None = None, *,
                        magnitude: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Choose alternating-sign extrema: the one exchange rule of every Remez-type solver in the package.

    ``values`` are the signed errors e(x_0), …, e(x_{K−1}) at candidate points sorted by abscissa — float64,
    mpmath ``mpf`` or arb balls (compared exactly: balls by their midpoints, so levels that agree to 1e-30 are not
    tied as they would be in float). Two steps:

    1. each run of equal sign is merged to its member of largest |e| (exact zeros are skipped: they carry no sign);
       the merged sequence alternates;
    2. while more than ``count`` remain, the weakest point is dropped if it is an end point or only one point too
       many remains (then the weaker end goes), else the weakest point together with its weaker neighbour — either
       way the sequence still alternates and the smallest level max_i min |e| is raised as far as one step can.

    By de la Vallée Poussin's theorem min_i |e(x_i)| over an alternating set of m + n + 2 points is a lower bound of
    E_{m,n}, so keeping the largest levels is what the exchange wants (Powell, *Approximation Theory and Methods*,
    §9.3; Trefethen, ATAP, ch. 10).

    Parameters
    ----------
    values : sequence of float, mpf or arb, ordered by abscissa.
    count : the number wanted; None keeps every merged point (then ``len`` of the result counts the alternations).
    magnitude : key for "largest |e|" (default the exact |e|; :mod:`~rational_approx.verification.lower_bound`
        passes a certified lower bound of |e|).

    Returns
    -------
    ndarray of int — indices into ``values``, increasing. Fewer than ``count`` when there are fewer alternations:
    the caller checks the length.

    Example
    -------
    >>> alternating_indices([0.5, 0.9, -0.7, 0.0, 0.8, -0.1, 0.6], 4).tolist()
    [1, 2, 4, 5]
    """
    exact = [_exact_scalar(v) for v in values]
    size = magnitude if magnitude is not None else abs
    mags = [size(v) if magnitude is not None else abs(e) for v, e in zip(values, exact, strict=True)]
    idx: list[int] = []
    sgn: list[bool] = []
    for i, e in enumerate(exact):
        if e == 0:
            continue
        pos = e > 0
        if idx and sgn[-1] == pos:
            if mags[i] > mags[idx[-1]]:
                idx[-1] = i
        else:
            idx.append(i)
            sgn.append(pos)
    if count is not None:
        while len(idx) > count:
            k = min(range(len(idx)), key=lambda j: mags[idx[j]])
            if len(idx) - count == 1 or k == 0 or k == len(idx) - 1:
                if len(idx) - count == 1 and 0 < k < len(idx) - 1:
                    k = 0 if mags[idx[0]] <= mags[idx[-1]] else len(idx) - 1
                del idx[k]
            else:
                j = k - 1 if mags[idx[k - 1]] < mags[idx[k + 1]] else k + 1
                for i in sorted((k, j), reverse=True):
                    del idx[i]
    return np.asarray(idx, dtype=int)
