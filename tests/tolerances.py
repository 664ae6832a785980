"""Where the suite's floating-point tolerances come from.

Two computations of one quantity that differ only in rounding (another summation order,
another vector width, a fused kernel, two processes instead of one) differ by an amount that
rounding-error analysis bounds (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed.): a sum of ``n`` terms is within ``gamma_n = n u / (1 - n u)`` of the exact sum,
relative to the sum of the terms' magnitudes, where ``u`` is the unit roundoff of the dtype
(2**-24 for float32, 2**-53 for float64). That worst case is rarely approached: rounding
errors are independent enough that ``lambda * sqrt(n) * u`` holds with probability at least
``1 - 2 exp(-lambda**2 / 2)`` (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019); lambda = 6
makes a failure by chance a 3e-8 event per comparison.

Every tolerance in the suite is one of these, or a comment beside it says what else it is
(a statistical bound, a value printed to a digit, an interval's width). A tolerance tuned to
pass on one machine is what this module exists to prevent: ``tests/test_tolerances.py``
fails on a tolerance argument with no comment and no use of these functions.
"""

from __future__ import annotations

import math

import numpy as np

# lambda of the probabilistic bound: P(a chance failure) <= 2 exp(-18) = 3e-8
LAMBDA = 6.0


def unit_roundoff(dtype) -> float:
    """u: half the distance from 1 to the next float (2**-24 float32, 2**-53 float64)."""
    name = str(dtype).replace("torch.", "")
    return float(np.finfo(np.dtype(name)).eps) / 2


def gamma(n: int, dtype) -> float:
    """Worst-case relative error of a sum (or dot product) of ``n`` terms, relative to the
    sum of their magnitudes (Higham's gamma_n)."""
    nu = n * unit_roundoff(dtype)
    assert nu < 1, "gamma_n is bounded only for n u < 1"
    return nu / (1 - nu)


def sum_rtol(n: int, dtype) -> float:
    """Relative difference of two orderings of an ``n``-term sum: both within gamma_n of
    the exact value, so within 2 gamma_n of each other (worst case)."""
    return 2 * gamma(n, dtype)


def random_sum_rtol(n: int, dtype) -> float:
    """The probabilistic counterpart of :func:`sum_rtol`: ``2 lambda sqrt(n) u``."""
    return 2 * LAMBDA * math.sqrt(n) * unit_roundoff(dtype)


def network_rtol(depth: int, k: int, dtype) -> float:
    """Relative difference (in norm) of a network's output or gradient computed in two
    orders: each of ``depth`` layers reduces over at most ``k`` terms and adds its
    probabilistic sum error; errors of well-conditioned layers add up (first order)."""
    return depth * random_sum_rtol(k, dtype)


def ops_rtol(ops: int, dtype) -> float:
    """Relative difference of a value computed by ``ops`` roundings in two ways (e.g. a
    fused kernel against separate operations): each side within ``ops u``."""
    return 2 * ops * unit_roundoff(dtype)


def ulp(x, dtype) -> float:
    """The spacing of floats at magnitude ``x``: what one rounding of a stored value moves."""
    return float(np.spacing(np.asarray(abs(x), dtype=np.dtype(str(dtype).replace("torch.",
                                                                                   "")))))
