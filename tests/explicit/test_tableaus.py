"""The explicit plugin's own unit tests of its tableau data: mathematical checks of the
Runge–Kutta tableaux in ``plugins/autodiffeq_plugins/explicit/tableaus.py``, an internal
module loaded here by file path on purpose (see :func:`_load_tableaus`). The registered
solvers' public behaviour is tested through ``ade.solve`` elsewhere (``tests/test_solve.py``,
the conformance suite).

Nothing here restates coefficients: consistency, classical order (Butcher's rooted-tree order
conditions), embedded order, dense-output order and the real stability boundary are all
recomputed from the tableau data.
"""

import importlib.util
import pathlib
import sys
import types

import numpy as np
import pytest

_PLUGINS = pathlib.Path(__file__).resolve().parents[2] / "plugins"
sys.path.insert(0, str(_PLUGINS))
_EXPLICIT = _PLUGINS / "autodiffeq_plugins" / "explicit"


def _load_tableaus() -> types.ModuleType:
    """Load tableau.py and tableaus.py by file path under a private synthetic package.

    The real ``autodiffeq_plugins.explicit`` package may import the core library (which need
    not be importable here), so it is bypassed; ``from .tableau import ...`` in tableaus.py
    resolves against the synthetic package.
    """
    pkg_name = "_autodiffeq_explicit_tableaus_under_test"
    if f"{pkg_name}.tableaus" in sys.modules:
        return sys.modules[f"{pkg_name}.tableaus"]
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(_EXPLICIT)]
    sys.modules[pkg_name] = pkg
    for name in ("tableau", "tableaus"):
        spec = importlib.util.spec_from_file_location(
            f"{pkg_name}.{name}", _EXPLICIT / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(pkg, name, module)
    return sys.modules[f"{pkg_name}.tableaus"]


_mod = _load_tableaus()
TABLEAUS = _mod.TABLEAUS
NAMES = sorted(TABLEAUS)

# Roundoff allowance relative to the magnitude of the summed terms (see _Weights.residual).
RTOL = 1e-12
# A condition counts as violated when its defect exceeds this many roundoff allowances.
FAIL_FACTOR = 100.0
THETAS = (0.1, 0.25, 0.5, 0.7, 0.9)


# --------------------------------------------------------------------------------------------
# Rooted trees: a tree is the sorted tuple of its subtrees (the single node is ``()``).
# --------------------------------------------------------------------------------------------


def _order(t: tuple) -> int:
    return 1 + sum(_order(s) for s in t)


def _density(t: tuple) -> int:
    g = _order(t)
    for s in t:
        g *= _density(s)
    return g


def _grow(t: tuple) -> set:
    """All trees obtained from ``t`` by attaching one leaf to one of its nodes."""
    out = {tuple(sorted(t + ((),)))}
    for i, s in enumerate(t):
        for s2 in _grow(s):
            out.add(tuple(sorted(t[:i] + (s2,) + t[i + 1 :])))
    return out


def _trees_up_to(n: int) -> dict[int, list]:
    by_order = {1: [()]}
    for k in range(2, n + 1):
        new = set()
        for t in by_order[k - 1]:
            new |= _grow(t)
        by_order[k] = sorted(new)
    return by_order


TREES = _trees_up_to(9)


def test_tree_generator():
    # Numbers of rooted trees (OEIS A000081) and the densities of the small ones.
    assert [len(TREES[k]) for k in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]
    assert sorted(_density(t) for t in TREES[3]) == [3, 6]
    assert sorted(_density(t) for t in TREES[4]) == [4, 8, 12, 24]


class _Weights:
    """Stage vectors g(t) = prod_children (A g(child)) of Butcher's elementary weights.

    Phi(t) = b . g(t).  Next to each g(t) we keep G(t) = prod_children (|A| |g(child)|), the
    magnitude of the terms summed in the last products, to size the roundoff allowance.
    """

    def __init__(self, a: np.ndarray):
        self.a = a
        self.abs_a = np.abs(a)
        self._cache: dict = {}

    def g(self, t: tuple) -> tuple[np.ndarray, np.ndarray]:
        if t not in self._cache:
            n = self.a.shape[0]
            v, w = np.ones(n), np.ones(n)
            for s in t:
                gs, _ = self.g(s)
                v = v * (self.a @ gs)
                w = w * (self.abs_a @ np.abs(gs))
            self._cache[t] = (v, w)
        return self._cache[t]

    def residual(
        self, b: np.ndarray, b_mag: np.ndarray, t: tuple, theta: float = 1.0
    ) -> tuple[float, float]:
        """(Phi(t) - theta**rho / gamma, magnitude of the terms that produced Phi(t)).

        ``b_mag`` bounds the terms summed to form each weight (``|b|`` for constant weights,
        ``sum_m |P_jm| theta**(m+1)`` for dense-output weights).
        """
        v, w = self.g(t)
        target = theta ** _order(t) / _density(t)
        return float(b @ v) - target, float(b_mag @ w) + target


def _max_defect(weights, b, b_mag, order: int, theta: float = 1.0) -> float:
    """Largest order-condition defect over trees of exactly ``order``, in units of the
    roundoff allowance ``RTOL * magnitude``."""
    worst = 0.0
    for t in TREES[order]:
        err, scale = weights.residual(b, b_mag, t, theta)
        worst = max(worst, abs(err) / (RTOL * scale))
    return worst


def _satisfied(weights, b, b_mag, order, theta=1.0) -> bool:
    return all(_max_defect(weights, b, b_mag, k, theta) <= 1.0 for k in range(1, order + 1))


def _violated(weights, b, b_mag, order, theta=1.0) -> bool:
    """Some condition of this order fails by far more than the roundoff allowance."""
    return _max_defect(weights, b, b_mag, order, theta) > FAIL_FACTOR


# --------------------------------------------------------------------------------------------
# 1. Consistency and metadata
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=NAMES, ids=NAMES)
def tab(request):
    return TABLEAUS[request.param]


def test_registry_names(tab):
    assert TABLEAUS[tab.name] is tab
    assert tab.source


def test_consistency(tab):
    s = tab.stages
    for arr in (tab.c, tab.A, tab.b):
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
    assert tab.c.shape == (s,) and tab.A.shape == (s, s)
    assert np.all(np.triu(tab.A) == 0.0), "A must be strictly lower triangular"
    assert tab.c[0] == 0.0
    assert np.all(np.abs(tab.A.sum(axis=1) - tab.c) <= _row_sum_tol(tab.A))
    assert abs(tab.b.sum() - 1.0) <= _sum_tol(tab.b)  # was 1e-14
    if tab.fsal:
        assert tab.c[-1] == 1.0
        np.testing.assert_allclose(tab.A[-1], tab.b, rtol=0, atol=1e-15)
        assert tab.b[-1] == 0.0
    else:
        # A last stage that already is f(u_{n+1}, t_{n+1}) must be declared FSAL (reused).
        assert not (tab.c[-1] == 1.0 and np.array_equal(tab.A[-1], tab.b))


def test_error_metadata(tab):
    assert (tab.b_error is None) == (tab.error_order is None)
    if tab.b_error is not None:
        assert tab.b_error.shape == tab.b.shape and tab.b_error.dtype == np.float64
        # The embedded weights are a consistent method of their own.
        b_hat = tab.b - tab.b_error
        # the difference is rounded too: its terms' size plus b's (was 1e-14)
        assert abs(b_hat.sum() - 1.0) <= _sum_tol(b_hat) + _sum_tol(tab.b)
        assert tab.error_order < tab.order
        assert tab.stability_boundary is not None, "adaptive methods need stiffness detection"


# --------------------------------------------------------------------------------------------
# 2. Classical and embedded order
# --------------------------------------------------------------------------------------------


def test_order_exact(tab):
    w = _Weights(tab.A)
    b_mag = np.abs(tab.b)
    assert _satisfied(w, tab.b, b_mag, tab.order)
    assert _violated(w, tab.b, b_mag, tab.order + 1), "declared order is not the exact order"


def test_embedded_order_exact(tab):
    if tab.b_error is None:
        pytest.skip("no embedded method")
    w = _Weights(tab.A)
    b_hat = tab.b - tab.b_error
    b_mag = np.abs(tab.b) + np.abs(tab.b_error)
    assert _satisfied(w, b_hat, b_mag, tab.error_order)
    assert _violated(w, b_hat, b_mag, tab.error_order + 1)


# --------------------------------------------------------------------------------------------
# 3. Dense output
# --------------------------------------------------------------------------------------------


def _augmented(tab) -> tuple[np.ndarray, np.ndarray]:
    """(c, A) over the interpolation stages: k_1..k_s, k_end (if not FSAL), extra stages."""
    s, n = tab.stages, tab.n_interp_stages
    e = 0 if tab.extra is None else len(tab.extra.c)
    c = np.zeros(n + e)
    a = np.zeros((n + e, n + e))
    c[:s], a[:s, :s] = tab.c, tab.A
    if not tab.fsal:
        c[s], a[s, :s] = 1.0, tab.b
    if e:
        assert tab.extra.c.shape == (e,) and tab.extra.A.shape == (e, n + e)
        c[n:], a[n:, :] = tab.extra.c, tab.extra.A
    return c, a


def _dense_weights(tab, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(b_j(theta), magnitude of the terms summed to form each b_j(theta))."""
    if tab.dense is not None:
        powers = theta ** np.arange(1, tab.dense.shape[1] + 1)
        return tab.dense @ powers, np.abs(tab.dense) @ powers
    # Cubic Hermite on (u_n, f_n, u_{n+1}, f_{n+1}), f_{n+1} = k_end.
    n = tab.n_interp_stages
    end = tab.stages - 1 if tab.fsal else tab.stages
    h01 = 3 * theta**2 - 2 * theta**3
    h10 = theta - 2 * theta**2 + theta**3
    h11 = theta**3 - theta**2
    w = np.zeros(n)
    w[: tab.stages] = h01 * tab.b
    w[0] += h10
    w[end] += h11
    return w, np.abs(w) + 4.0


def _row_sum_tol(a: np.ndarray) -> np.ndarray:
    """Roundoff allowance for the row sums of ``a`` against a value of at most 1 (``c_i``):
    n eps per sum of n terms times their magnitudes (Higham's gamma_n), 8x (was 8 eps,
    without the number of terms)."""
    return 8 * a.shape[1] * np.finfo(np.float64).eps * (np.abs(a).sum(axis=1) + 1.0)


def _sum_tol(w: np.ndarray) -> float:
    """The same allowance for the sum of the weights ``w`` against 1."""
    return float(_row_sum_tol(np.asarray(w)[None, :])[0])


def test_dense_structure(tab):
    c, a = _augmented(tab)
    n_all = len(c)
    assert np.all(np.triu(a) == 0.0), "extra stages may only use earlier stages"
    assert np.all(np.abs(a.sum(axis=1) - c) <= _row_sum_tol(a))
    if tab.dense is not None:
        assert tab.dense.dtype == np.float64 and tab.dense.shape[0] == n_all
    else:
        assert tab.extra is None
        assert tab.dense_order <= 3
    assert tab.dense_order is not None and tab.dense_order <= tab.order


def test_dense_continuity(tab):
    """u(theta=1) is u_{n+1}, and u(0) = u_n."""
    c, _ = _augmented(tab)
    expected = np.zeros(len(c))
    expected[: tab.stages] = tab.b
    w, w_mag = _dense_weights(tab, 1.0)
    assert np.all(np.abs(w - expected) <= RTOL * w_mag), w - expected
    np.testing.assert_array_equal(_dense_weights(tab, 0.0)[0], np.zeros(len(c)))


def test_dense_order_exact(tab):
    _, a = _augmented(tab)
    w = _Weights(a)
    for theta in THETAS:
        assert _satisfied(w, *_dense_weights(tab, theta), tab.dense_order, theta), theta
    assert any(
        _violated(w, *_dense_weights(tab, theta), tab.dense_order + 1, theta) for theta in THETAS
    ), "declared dense order is not exact"


# --------------------------------------------------------------------------------------------
# 4. Stability boundary on the negative real axis
# --------------------------------------------------------------------------------------------


def _stability(tab, z: float) -> float:
    s = tab.stages
    return 1.0 + z * tab.b @ np.linalg.solve(np.eye(s) - z * tab.A, np.ones(s))


def _first_exit(tab) -> float:
    """Smallest x > 0 with |R(-x)| > 1, by scanning then bisection."""
    xs = np.linspace(1e-3, 10.0, 10001)
    bad = next(x for x in xs if abs(_stability(tab, -x)) > 1.0)
    lo, hi = bad - 1e-3, bad
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if abs(_stability(tab, -mid)) > 1.0 else (mid, hi)
    return hi


def test_stability_boundary(tab):
    x_b = tab.stability_boundary
    if x_b is None:
        pytest.skip("no stability boundary declared")
    # Stable on the whole interval up to the declared boundary, unstable just above ...
    for x in np.linspace(1e-6, x_b, 2001):
        assert abs(_stability(tab, -x)) <= 1 + 1e-9, x
    assert abs(_stability(tab, -(x_b + 0.01))) > 1.0
    # ... and the declared value is the true boundary rounded down to two decimals.
    true = _first_exit(tab)
    assert x_b <= true < x_b + 0.01 + 1e-12, true
