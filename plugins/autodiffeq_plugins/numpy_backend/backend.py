"""NumPy implementation of :class:`autodiffeq.backend.Backend`."""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.backend import Backend, host_generator

#: SuperLU supernode relaxation and panel size (see :meth:`NumpyBackend._sparse_lu`)
SUPERLU_TUNING = {"relax": 2, "panel_size": 6}


class NumpyBackend(Backend):
    """Arrays are ``numpy.ndarray`` (and NumPy scalars); linear algebra from SciPy.

    Capability ``"sparse"``: :attr:`sparse` is ``scipy.sparse`` (the namespace solvers use to
    build sparse matrices such as ``W = M / (gamma dt) - J``), and :meth:`lu_factor` accepts
    ``scipy.sparse`` matrices (SuperLU through ``scipy.sparse.linalg.splu``).
    """

    name = "numpy"
    xp = np
    device = "cpu"
    capabilities = frozenset({"lu", "sparse", "rng", "autograd"})
    array_type = (np.ndarray, np.generic)
    # ndarray.dot skips the __array_function__ dispatch of np.dot and np.matmul: about half
    # the cost on the small operands of stage sums and norms (the state is always 1-D here)
    dot = staticmethod(np.ndarray.dot)

    def __init__(self) -> None:
        self._lapack: dict[Any, tuple[Any, Any]] = {}
        # the fill-reducing order of the last sparse structure factored
        self._sparse_order: _SparseOrder | None = None

    @property
    def sparse(self) -> Any:
        """``scipy.sparse`` (imported on first use)."""
        import scipy.sparse

        return scipy.sparse

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def dense_lapack(self, dtype: Any) -> tuple[Any, Any]:
        """LAPACK ``(getrf, getrs)`` for ``dtype`` (float32 or float64): the kernels of
        :meth:`lu_factor` on dense arrays, for solvers whose per-step cost on small systems is
        the cost of these calls (the Rosenbrock stepper's NumPy path). ``getrs`` takes
        ``(lu, piv, b, trans, overwrite_b)`` positionally."""
        dtype = np.dtype(dtype)
        funcs = self._lapack.get(dtype)
        if funcs is None:
            from scipy.linalg import get_lapack_funcs

            getrf, getrs = get_lapack_funcs(("getrf", "getrs"), (np.zeros(1, dtype=dtype),))
            funcs = self._lapack[dtype] = (getrf, _positional_getrs(getrs))
        return funcs

    def lu_factor(self, a: Any) -> Any:
        """LU with partial pivoting straight from LAPACK ``getrf`` (SciPy's ``get_lapack_funcs``,
        looked up once per dtype): the ``scipy.linalg.lu_factor``/``lu_solve`` wrappers cost
        ~14 us per call, which is most of a Rosenbrock step on small systems.

        ``scipy.sparse`` matrices go to SuperLU (``splu``, see :meth:`_sparse_lu`)."""
        if type(a) is np.ndarray:  # the hot path: a dense W every step
            funcs = self._lapack.get(a.dtype)
            if funcs is not None:
                lu, piv, _info = funcs[0](a)
                return ("lapack", lu, piv, funcs[1])
        import scipy.sparse as sp

        if sp.issparse(a):
            return self._sparse_lu(a)
        a = np.asarray(a)
        getrf, getrs = self.dense_lapack(a.dtype)
        lu, piv, _info = getrf(a)  # info > 0: singular; the solve then yields inf/nan,
        return ("lapack", lu, piv, getrs)  # which the driver rejects as a failed step


    def _sparse_lu(self, a: Any) -> Any:
        """SuperLU of a sparse matrix, reusing the fill-reducing order of the last structure.

        The column order is ``MMD_AT_PLUS_A`` (minimum degree on ``A + A^T``) when the
        structure is symmetric, as for the stencils of discretised PDEs, and SciPy's default
        ``COLAMD`` otherwise: on the 2-D Brusselator's ``W`` (2048 states) the symmetric order
        halves the fill (1.4e5 vs 2.7e5 entries) and factors in 3.5 ms instead of 5.1 ms.

        A solve factors many matrices of one structure (``W`` at every step). After the first,
        which computes the order, each is permuted symmetrically by it, ``P A P^T`` (a
        precomputed gather of the values), and factored in its natural order: the same fill
        without the ordering (3.0 ms instead of 3.5 ms on the Brusselator); solves permute
        ``b`` and ``x`` accordingly.

        Supernode parameters :data:`SUPERLU_TUNING` (smaller than SuperLU's defaults) factor
        these PDE-like matrices 10-25% faster, measured on the Brusselator's ``W`` for
        2048, 8192 and 18432 states (e.g. 2.5 vs 3.4 ms, 42 vs 49 ms, 137 vs 177 ms)."""
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        A = sp.csc_matrix(a)
        if not A.has_canonical_format:
            A = A.copy()
            A.sum_duplicates()
        order = self._sparse_order
        if order is not None and order.matches(A):
            if order.perm is None:
                return ("splu", splu(A, permc_spec=order.spec, **SUPERLU_TUNING))
            Ap = sp.csc_matrix((A.data[order.gather], order.indices, order.indptr),
                               shape=A.shape)
            return ("splu_perm", splu(Ap, permc_spec="NATURAL", **SUPERLU_TUNING), order.perm)
        symmetric = A.shape[0] == A.shape[1] and _structurally_symmetric(A)
        spec = "MMD_AT_PLUS_A" if symmetric else "COLAMD"
        lu = splu(A, permc_spec=spec, **SUPERLU_TUNING)
        self._sparse_order = _SparseOrder(A, spec, lu.perm_c if symmetric else None)
        return ("splu", lu)

    def lu_solve(self, factor: Any, b: Any) -> Any:
        kind = factor[0]
        if kind == "lapack":
            _, lu, piv, getrs = factor
            x, _info = getrs(lu, piv, b)
            return x
        if kind == "splu":
            return factor[1].solve(b)
        perm = factor[2]
        x = np.empty_like(b)
        x[perm] = factor[1].solve(b[perm])
        return x

    def rng(self, seed: Any = None) -> np.random.Generator:
        return host_generator(seed)

    def normal(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
        return rng.standard_normal(shape, dtype=dtype)


def _structurally_symmetric(A: Any) -> bool:
    import scipy.sparse as sp

    S = sp.csc_matrix((np.ones(A.nnz, dtype=np.int8), A.indices, A.indptr), shape=A.shape)
    return bool((S != S.T).nnz == 0)


class _SparseOrder:
    """A CSC structure (copied, to recognise it), its SuperLU column order ``spec``
    and, for a symmetric order, the permutation ``perm`` with the gather that forms the values
    of ``P A P^T = A[perm][:, perm]`` (whose structure is ``indptr, indices``) from ``A``'s."""

    def __init__(self, A: Any, spec: str, perm_c: Any) -> None:
        import scipy.sparse as sp

        self.shape = A.shape
        self._copy = (A.indptr.copy(), A.indices.copy())
        self.spec = spec
        self.perm: np.ndarray | None = None
        if perm_c is not None:
            # SuperLU puts column j at position perm_c[j]: P A P^T with perm = perm_c^-1 is
            # the matrix it factors (same fill, checked on the Brusselator)
            perm = np.argsort(perm_c)
            tags = sp.csc_matrix((np.arange(1, A.nnz + 1, dtype=np.float64), A.indices,
                                  A.indptr), shape=A.shape)
            Ap = sp.csc_matrix(tags[perm][:, perm])
            Ap.sort_indices()
            self.perm = perm
            self.gather = Ap.data.astype(np.int64) - 1
            self.indptr = Ap.indptr
            self.indices = Ap.indices

    def matches(self, A: Any) -> bool:
        if A.shape != self.shape:
            return False
        indptr, indices = self._copy
        return (A.indptr.shape == indptr.shape and A.indices.shape == indices.shape
                and np.array_equal(A.indptr, indptr) and np.array_equal(A.indices, indices))


def _positional_getrs(getrs: Any) -> Any:
    """SciPy's f2py ``getrs`` when it takes ``(lu, piv, b, trans, overwrite_b)`` positionally
    (its signature since SciPy 0.x; keyword parsing doubles the cost of a small solve, 0.41 vs
    0.21 us), else a wrapper that passes the last two by keyword. The factor tuples of
    :meth:`NumpyBackend.lu_factor` carry this callable: ``getrs(lu, piv, b, 0, 1)`` solves in
    place of a contiguous ``b``."""
    doc = (getrs.__doc__ or "").replace(" ", "")
    if "(lu,piv,b,[trans,overwrite_b])" in doc:
        return getrs

    def by_keyword(lu: Any, piv: Any, b: Any, trans: int = 0, overwrite_b: int = 0) -> Any:
        return getrs(lu, piv, b, trans=trans, overwrite_b=overwrite_b)

    return by_keyword
