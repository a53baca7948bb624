"""The Rosenbrock methods shipped with autodiffeq, as :class:`RosenbrockTableau` data.

Coefficients carry over from the cited literature as tabulated in SciML's OrdinaryDiffEq.jl
(``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl`` for Rodas5P and
``lib/OrdinaryDiffEqRosenbrockTableaus/src/rosenbrock_tableaus.jl`` for Rodas4 and Rodas3P,
whose ``A, C, c, d, H, b, btilde`` are this module's ``A, C, alpha, gammas, H, m, m_error``);
Rosenbrock23 is rewritten from Shampine & Reichelt's own form into the transformed form (see
:data:`ROSENBROCK23`). Order claims are checked in ``tests/rosenbrock`` (order conditions up
to order 4, L-stability, measured convergence and dense-output orders).
"""

from __future__ import annotations

import math

import numpy as np

from .tableau import RosenbrockTableau, dense_from_rodas_H

__all__ = ["RODAS3P", "RODAS4", "RODAS5P", "ROSENBROCK23", "TABLEAUS"]


def _lower(rows: list[list[float]]) -> np.ndarray:
    """Strictly lower-triangular matrix from its full rows (upper entries must be zero)."""
    a = np.array(rows, dtype=np.float64)
    if np.any(np.triu(a) != 0):
        raise ValueError("expected a strictly lower-triangular matrix")
    return a


def _stiffly_accurate_weights(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m`` = last row of ``A`` plus 1 on the last stage, ``m - mhat = e_s`` (the embedded
    solution is the last stage's argument): the Rodas construction."""
    s = A.shape[0]
    m = A[s - 1].copy()
    m[s - 1] = 1.0
    m_error = np.zeros(s)
    m_error[s - 1] = 1.0
    return m, m_error


# --------------------------------------------------------------------------------------------
# Rosenbrock23: L. F. Shampine and M. W. Reichelt, "The MATLAB ODE Suite", SIAM J. Sci.
# Comput. 18 (1997) 1-22 (ode23s); OrdinaryDiffEq.jl's Rosenbrock23. In its own form, with
# d = 1/(2 + sqrt 2), e32 = 6 + sqrt 2 and W_SR = M - dt d J:
#     k1 = W_SR^{-1} (F0 + dt d T),                 F0 = f(u, t)
#     F1 = f(u + dt k1 / 2, t + dt / 2),            k2 = W_SR^{-1} (F1 - M k1) + k1
#     u_new = u + dt k2,                            F2 = f(u_new, t + dt)
#     k3 = W_SR^{-1} (F2 - e32 (M k2 - F1) - 2 (M k1 - F0) + dt d T)
#     err = dt (k1 - 2 k2 + k3) / 6 (up to sign),
#     u(theta) = u + dt (c1(theta) k1 + c2(theta) k2),
#     c1 = theta (1 - theta) / (1 - 2d),  c2 = theta (theta - 2d) / (1 - 2d).
# With W = W_SR / (dt d) (so gamma = d) and the increments U1 = dt d k1, U2 = dt d (k2 - k1),
# U3 = dt d k3 - e32 U2 - 2 U1 (eliminating F0 = W U1 - dt d T and F1 = W U2 + M U1 / (dt d))
# this is exactly the transformed form below; u_new is the third stage's argument, so F2 is
# also the next step's F0. It is a W-method: order 2 for any approximation of J.
_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)

ROSENBROCK23 = RosenbrockTableau(
    name="Rosenbrock23",
    gamma=_D,
    A=_lower([[0, 0, 0], [1 / (2 * _D), 0, 0], [1 / _D, 1 / _D, 0]]),
    C=_lower([[0, 0, 0], [-1 / _D, 0, 0], [-2 / _D, -_E32 / _D, 0]]),
    alpha=np.array([0.0, 0.5, 1.0]),
    gammas=np.array([_D, 0.0, -_D]),
    m=np.array([1 / _D, 1 / _D, 0.0]),
    # err = dt (k1 - 2 k2 + k3) / 6 = u3 - u_new with u3 = u + dt (k1 + 4 k2 + k3) / 6 the
    # third-order solution (Rosenbrock32's); as m - mhat, the weights take the opposite sign
    m_error=-np.array([1.0, _E32 - 2.0, 1.0]) / (6.0 * _D),
    order=2,
    error_order=3,
    dense=np.array(
        [
            [1 / _D, 0.0],
            [-2.0 / (1.0 - 2.0 * _D), 1.0 / (_D * (1.0 - 2.0 * _D))],
            [0.0, 0.0],
        ]
    ),
    dense_order=2,
    w_method=True,
    source=(
        "L. F. Shampine and M. W. Reichelt, The MATLAB ODE Suite, SIAM J. Sci. Comput. 18 "
        "(1997) 1-22 (ode23s); as Rosenbrock23 in OrdinaryDiffEq.jl."
    ),
    description="L-stable 2(3) Rosenbrock W-method of MATLAB's ode23s; cheap, robust at loose "
    "tolerances; FSAL, second-order dense output.",
)


# --------------------------------------------------------------------------------------------
# Rodas4: E. Hairer and G. Wanner, Solving Ordinary Differential Equations II, 2nd ed.
# (Springer, 1996), Sect. VI.4: the coefficients of RODAS (as in the authors' code rodas.f), in
# the transformed form; dense-output matrix H as in OrdinaryDiffEq.jl (RODAS4H).
_RODAS4_A = _lower(
    [
        [0, 0, 0, 0, 0, 0],
        [1.544, 0, 0, 0, 0, 0],
        [0.9466785280815826, 0.2557011698983284, 0, 0, 0, 0],
        [3.314825187068521, 2.896124015972201, 0.9986419139977817, 0, 0, 0],
        [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 0, 0],
        [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1, 0],
    ]
)
_RODAS4_C = _lower(
    [
        [0, 0, 0, 0, 0, 0],
        [-5.6688, 0, 0, 0, 0, 0],
        [-2.430093356833875, -0.2063599157091915, 0, 0, 0, 0],
        [-0.1073529058151375, -9.594562251023355, -20.47028614809616, 0, 0, 0],
        [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616, 0, 0],
        [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
         -6.058818238834054, 0],
    ]
)
_RODAS4_H = np.array(
    [
        [10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
         1.025137723295662, 0.0],
        [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
         -6.594389125716872, 0.0],
    ]
)
_RODAS4_M, _RODAS4_E = _stiffly_accurate_weights(_RODAS4_A)

RODAS4 = RosenbrockTableau(
    name="Rodas4",
    gamma=0.25,
    A=_RODAS4_A,
    C=_RODAS4_C,
    alpha=np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0]),
    gammas=np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0]),
    m=_RODAS4_M,
    m_error=_RODAS4_E,
    order=4,
    error_order=3,
    dense=dense_from_rodas_H(_RODAS4_H, _RODAS4_M),
    dense_order=3,
    source=(
        "E. Hairer and G. Wanner, Solving Ordinary Differential Equations II, 2nd ed., "
        "Springer 1996, Sect. VI.4 (RODAS); dense output as in OrdinaryDiffEq.jl (Rodas4)."
    ),
    description="L-stable, stiffly accurate 4(3) Rosenbrock method with 6 stages (Hairer & "
    "Wanner's RODAS); third-order dense output; for stiff ODEs and index-1 DAEs.",
)


# --------------------------------------------------------------------------------------------
# Rodas5P: G. Steinebach, Construction of Rosenbrock-Wanner method Rodas5P and numerical
# benchmarks within the Julia Differential Equations package, BIT Numer. Math. 63 (2023) 27;
# coefficients as in OrdinaryDiffEq.jl (RODAS5PA, RODAS5PC, RODAS5Pc, RODAS5Pd, RODAS5PH).
_RODAS5P_A = _lower(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [3.0, 0, 0, 0, 0, 0, 0, 0],
        [2.849394379747939, 0.45842242204463923, 0, 0, 0, 0, 0, 0],
        [-6.954028509809101, 2.489845061869568, -10.358996098473584, 0, 0, 0, 0, 0],
        [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641,
         0, 0, 0, 0],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946, 0, 0, 0],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946, 1, 0, 0],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946, 1, 1, 0],
    ]
)
_RODAS5P_C = _lower(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [-14.155112264123755, 0, 0, 0, 0, 0, 0, 0],
        [-17.97296035885952, -2.859693295451294, 0, 0, 0, 0, 0, 0],
        [147.12150275711716, -1.41221402718213, 71.68940251302358, 0, 0, 0, 0, 0],
        [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306,
         0, 0, 0, 0],
        [24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125,
         -0.6610691825249471, 0, 0, 0],
        [30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783,
         -19.097331116725623, -28.087943162872662, 0, 0],
        [37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047,
         -40.06618937091002, -54.66780262877968, -9.48861652309627, 0],
    ]
)
_RODAS5P_H = np.array(
    [
        [25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204,
         0.524948541321073, 1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
        [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796,
         20.176138334709044, 15.98066361424651, -6.789040303419874, -6.710236069923372],
        [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643,
         -52.072871366152654, -59.78993625266729, -0.15582684282751913, 4.883087185713722],
    ]
)
_RODAS5P_M, _RODAS5P_E = _stiffly_accurate_weights(_RODAS5P_A)

RODAS5P = RosenbrockTableau(
    name="Rodas5P",
    gamma=0.21193756319429014,
    A=_RODAS5P_A,
    C=_RODAS5P_C,
    alpha=np.array([0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716,
                    0.4288403609558664, 1.0, 1.0, 1.0]),
    gammas=np.array([0.21193756319429014, -0.42387512638858027, -0.3384627126235924,
                     1.8046452872882734, 2.325825639765069, 0.0, 0.0, 0.0]),
    m=_RODAS5P_M,
    m_error=_RODAS5P_E,
    order=5,
    error_order=4,
    dense=dense_from_rodas_H(_RODAS5P_H, _RODAS5P_M),
    dense_order=4,
    source=(
        "G. Steinebach, Construction of Rosenbrock-Wanner method Rodas5P and numerical "
        "benchmarks within the Julia Differential Equations package, BIT Numer. Math. 63 "
        "(2023) 27; coefficients as in OrdinaryDiffEq.jl (Rodas5P)."
    ),
    description="L-stable, stiffly accurate 5(4) Rosenbrock method with 8 stages and "
    "fourth-order dense output (Steinebach 2023); the workhorse for stiff ODEs and index-1 "
    "DAEs at moderate to tight tolerances.",
)


# --------------------------------------------------------------------------------------------
# Rodas3P: G. Steinebach, Rosenbrock methods within OrdinaryDiffEq.jl - Overview, recent
# developments and applications, Proceedings of the JuliaCon Conferences (2024); coefficients
# as in OrdinaryDiffEq.jl (Rodas3PRodasTableau). Five stages, m - mhat = U5 - U4. Only the first
# two rows of its H form the interpolant (OrdinaryDiffEq's interp_order = 2 for Rodas3P); the
# third is for Steinebach's interpolation-based error check, not used here.
_RODAS3P_A = _lower(
    [
        [0, 0, 0, 0, 0],
        [4.0 / 3.0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [2.90625, 3.375, 0.40625, 0, 0],
        [2.90625, 3.375, 0.40625, 0, 0],
    ]
)
_RODAS3P_H = np.array(
    [
        [1.78125, 6.75, 0.15625, -6.0, -1.0],
        [4.21875, -15.1875, -3.09375, 9.0, 0.0],
        [4.21875, -2.025, -1.63125, -1.7, -0.1],
    ]
)
_RODAS3P_M = np.array([2.90625, 3.375, 0.40625, 0.0, 1.0])

RODAS3P = RosenbrockTableau(
    name="Rodas3P",
    gamma=1.0 / 3.0,
    A=_RODAS3P_A,
    C=_lower(
        [
            [0, 0, 0, 0, 0],
            [-4.0, 0, 0, 0, 0],
            [8.25, 6.75, 0, 0, 0],
            [1.21875, -5.0625, -1.96875, 0, 0],
            [4.03125, -15.1875, -4.03125, 6.0, 0],
        ]
    ),
    alpha=np.array([0.0, 4.0 / 9.0, 0.0, 1.0, 1.0]),
    gammas=np.array([1.0 / 3.0, -1.0 / 9.0, 1.0, 0.0, 0.0]),
    m=_RODAS3P_M,
    m_error=np.array([0.0, 0.0, 0.0, -1.0, 1.0]),
    order=3,
    error_order=2,
    dense=dense_from_rodas_H(_RODAS3P_H[:2], _RODAS3P_M),
    dense_order=3,
    source=(
        "G. Steinebach, Rosenbrock methods within OrdinaryDiffEq.jl - Overview, recent "
        "developments and applications, Proc. JuliaCon Conferences (2024); coefficients as in "
        "OrdinaryDiffEq.jl (Rodas3P)."
    ),
    description="L-stable, stiffly accurate 3(2) Rosenbrock method with 5 stages and "
    "third-order dense output (Steinebach 2024); for loose tolerances.",
)

#: every shipped method by name, in registration order
TABLEAUS: dict[str, RosenbrockTableau] = {
    t.name: t for t in (ROSENBROCK23, RODAS3P, RODAS4, RODAS5P)
}
