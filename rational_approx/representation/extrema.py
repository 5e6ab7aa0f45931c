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

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from flint import arb

from rational_approx.representation.domain import Domain

__all__ = ["local_extrema", "sup_error", "alternating_indices", "golden_section_max"]

_GOLD = (math.sqrt(5.0) - 1.0) / 2.0


def golden_section_max(g: Callable[[Any], Any], lo: Any, hi: Any, *, iters: int = 60,
                       xtol: float | None = None) -> Any:
    """Golden-section search for the maximiser of a unimodal g on [lo, hi] (one evaluation per iteration).

    Generic over the number type of ``lo`` and ``hi``:

    * floats: a scalar search;
    * numpy arrays: one independent search per entry, vectorised (g must map an array of points to an array);
    * python-flint ``arb``: g is evaluated at exact midpoints, and g(c) and g(d) are compared through the midpoint
      of g(c) − g(d) (their floats alone would tie once the values agree to 16 digits).

    Each iteration shrinks the bracket by 0.618… (in floats about 75 iterations reach the rounding level, and more
    do not help; in balls the ratio is taken at the working precision). ``xtol`` (relative) stops early once every
    bracket is at most xtol·max(|lo|, |hi|) wide (None: always ``iters`` iterations). Returns the better of the
    last two interior points (an array of them for arrays). On a flat maximum the abscissa is resolved only to
    about √(rounding / curvature) relative to the bracket: the value is what golden section pins down well.
    """
    ball = isinstance(lo, arb) or isinstance(hi, arb)
    # The reused interior point stays at the golden position only as well as the ratio is known (the error grows
    # by 1.618 per iteration): in balls, take the ratio at the working precision, not the float's 53 bits.
    gold = (arb(5).sqrt() - 1) / 2 if ball else _GOLD

    def point(x):
        return x.mid() if ball else x

    def at_least(u, v):  # u ≥ v, elementwise for arrays
        return float(u - v) >= 0 if ball else u >= v

    def pick(cond, u, v):
        return np.where(cond, u, v) if isinstance(cond, np.ndarray) else (u if cond else v)

    a, b = lo, hi
    c, d = point(b - gold * (b - a)), point(a + gold * (b - a))
    gc, gd = g(c), g(d)
    for _ in range(iters):
        left = at_least(gc, gd)  # a maximiser lies in [a, d]: d becomes the right end, c the new d
        a, b = pick(left, a, c), pick(left, d, b)
        new = point(pick(left, b - gold * (b - a), a + gold * (b - a)))
        g_new = g(new)
        c, d, gc, gd = pick(left, new, d), pick(left, c, new), pick(left, g_new, gd), pick(left, gc, g_new)
        if xtol is not None:
            fa, fb = (float(a), float(b)) if ball else (a, b)
            if np.all(fb - fa <= xtol * np.maximum(np.abs(fa), np.abs(fb)) + 1e-300):
                break
    return pick(at_least(gc, gd), c, d)


def _polish(err: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, sgn: np.ndarray,
            iters: int = 60) -> np.ndarray:
    """Maximise sgn·e on [lo, hi], vectorised over intervals: golden section, then two parabola steps."""
    x = golden_section_max(lambda t: sgn * err(t), lo.copy(), hi.copy(), iters=iters, xtol=4e-16)
    # Golden section on a flat maximum resolves x only to ≈ √(rounding/curvature); a parabola through three points
    # a small step apart, whose spread in e is far above rounding, places the vertex an order of magnitude closer.
    for s in (1e-2, 1e-3):
        step = s * (hi - lo)
        em, e0, ep = sgn * err(x - step), sgn * err(x), sgn * err(x + step)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # non-finite curvature: no parabola step
            curv = em - 2.0 * e0 + ep
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


def _exact_scalar(v: Any) -> float | Fraction:
    """v as a number whose sign and absolute value compare exactly: a float stays a float; an mpmath ``mpf`` or an arb
    ball becomes the exact rational (``Fraction``) of its (mid)point — mpmath rounds even ``abs`` and unary minus to the
    context precision, and so does arb to ``ctx.prec``."""
    if isinstance(v, arb):
        man, exp = v.mid().man_exp()
        man, exp = int(man), int(exp)
    elif isinstance(v, mpmath.mpf):
        sign, man, exp, _ = v._mpf_
        if man == 0 and exp != 0:
            return float(v)  # ±inf or nan
        man, exp = (-int(man) if sign else int(man)), int(exp)
    else:
        return float(v)
    return Fraction(man) * 2**exp if exp >= 0 else Fraction(man, 2**-exp)


def alternating_indices(values: Sequence[Any] | np.ndarray, count: int | None = None, *,
                        magnitude: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Choose alternating-sign extrema: the one exchange rule of every Remez-type solver in the package.

    ``values`` are the signed errors e(x_0), …, e(x_{K−1}) at candidate points sorted by abscissa — float64,
    mpmath ``mpf`` or arb balls (compared exactly, as rationals — balls by their midpoints — so levels that agree to
    1e-30 are not tied as they would be in float). Two steps:

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
