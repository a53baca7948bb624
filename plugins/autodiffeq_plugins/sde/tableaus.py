"""Stochastic Runge–Kutta tableaus of the Rößler SRI and SRA classes, as plain data.

Sources
-------
* A. Rößler, "Runge–Kutta methods for the strong approximation of solutions of stochastic
  differential equations", SIAM J. Numer. Anal. 48(3):922–952, 2010, doi:10.1137/09076636X
  (the SRI and SRA classes, SRIW1, SRIW2, SRA1, SRA2, SRA3).
* C. Rackauckas and Q. Nie, "Stability-optimized high order methods and stiffness detection for
  pathwise stiff stochastic differential equations", arXiv:1804.04344, 2018 (SOSRI, SOSRI2,
  SOSRA, SOSRA2).

Every coefficient is copied digit for digit from StochasticDiffEq.jl (SciML), files
``src/tableaus.jl`` (``constructSRIW1``, ``constructSRIW2``, ``constructSRIOpt1`` = SOSRI,
``constructSRIOpt2`` = SOSRI2, ``constructSRA1``, ``constructSRA2``, ``constructSRA3``,
``constructSOSRA``, ``constructSOSRA2``) and ``src/caches/rossler_caches.jl`` /
``src/caches/sra_caches.jl`` (the ``*ConstantCache`` constructors that the specialised
``SOSRI``/``SOSRI2``/``SRA2``/``SRA3``/``SOSRA``/``SOSRA2`` steppers actually use; where these
give the nodes ``c`` as literals, those literals are used here).  Nothing is re-derived.

Naming follows StochasticDiffEq.jl / Rößler: ``A0, A1, B0, B1`` (``A₀ ...``), ``alpha`` (``α``),
``beta1..beta4`` (``β₁..β₄``), ``c0, c1`` (``c₀, c₁``).  Matrices are full square, strictly
lower-triangular tuples of rows; ``M[i][j]`` is the weight of stage ``j`` in stage ``i``
(0-based).

The SRI scheme (diagonal/scalar noise, Itô), per noise component, with ``h = dt``,
``I1 = ΔW``, ``I11 = (ΔW**2 - h)/2``, ``I10`` = ∫(W_s - W_t) ds, ``I111 = (ΔW**3 - 3hΔW)/6``::

    H0_i = u + sum_j A0[i][j] f(t + c0_j h, H0_j) h + sum_j B0[i][j] g(t + c1_j h, H1_j) I10/h
    H1_i = u + sum_j A1[i][j] f(t + c0_j h, H0_j) h + sum_j B1[i][j] g(t + c1_j h, H1_j) sqrt(h)
    u_new = u + sum_i alpha_i f(t + c0_i h, H0_i) h
              + sum_i (beta1_i I1 + beta2_i I11/sqrt(h) + beta3_i I10/h + beta4_i I111/h)
                      g(t + c1_i h, H1_i)

The SRA scheme (additive noise, Itô = Stratonovich)::

    H0_i = u + sum_j A0[i][j] f(t + c0_j h, H0_j) h + sum_j B0[i][j] g(t + c1_j h) I10/h
    u_new = u + sum_i alpha_i f(t + c0_i h, H0_i) h
              + sum_i (beta1_i I1 + beta2_i I10/h) g(t + c1_i h)

``order`` is the strong order (1.5 for every method here) and ``weak_order`` the weak order,
both as stated in the StochasticDiffEq.jl / DiffEqDocs solver docs.  Note StochasticDiffEq's own
``order`` field / ``alg_order`` (used for the step-size controller exponents) is 3//2 for SRI
methods but 2//1 for SRA methods.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "SOSRA",
    "SOSRA2",
    "SOSRI",
    "SOSRI2",
    "SRA1",
    "SRA2",
    "SRA3",
    "SRA_TABLEAUS",
    "SRIW1",
    "SRIW2",
    "SRI_TABLEAUS",
    "SRATableau",
    "SRITableau",
]

Vec = tuple[float, ...]
Mat = tuple[tuple[float, ...], ...]

_ROSSLER_2010 = (
    "A. Rößler, Runge–Kutta methods for the strong approximation of solutions of stochastic "
    "differential equations, SIAM J. Numer. Anal. 48(3):922–952 (2010), doi:10.1137/09076636X; "
    "coefficients as in StochasticDiffEq.jl src/tableaus.jl"
)
_RACKAUCKAS_NIE_2018 = (
    "C. Rackauckas, Q. Nie, Stability-optimized high order methods and stiffness detection for "
    "pathwise stiff stochastic differential equations, arXiv:1804.04344 (2018); coefficients as "
    "in StochasticDiffEq.jl src/tableaus.jl and src/caches/{rossler,sra}_caches.jl"
)


@dataclass(frozen=True)
class SRITableau:
    """Stochastic Runge–Kutta tableau of the SRI class (Rößler 2010) for Itô SDEs with
    diagonal/scalar noise: ``s`` stages (4 for every method here), strong order 1.5.

    ``A0, B0`` build the drift stages ``H0``, ``A1, B1`` the diffusion stages ``H1``; ``alpha``
    weights the drift, ``beta1..beta4`` weight the diffusion evaluations against ``ΔW``,
    ``I_(1,1)/sqrt(h)``, ``I_(1,0)/h`` and ``I_(1,1,1)/h``; ``c0``/``c1`` are the time nodes of
    the drift/diffusion evaluations.  See the module docstring for the scheme.
    """

    name: str
    c0: Vec
    c1: Vec
    A0: Mat
    A1: Mat
    B0: Mat
    B1: Mat
    alpha: Vec
    beta1: Vec
    beta2: Vec
    beta3: Vec
    beta4: Vec
    order: float
    weak_order: float
    reference: str

    @property
    def stages(self) -> int:
        return len(self.alpha)


@dataclass(frozen=True)
class SRATableau:
    """Stochastic Runge–Kutta tableau of the SRA class (Rößler 2010) for SDEs with additive noise
    (``g`` independent of ``u``; Itô and Stratonovich coincide), strong order 1.5.

    ``A0, B0`` build the stages ``H0``; ``alpha`` weights the drift, ``beta1``/``beta2`` weight
    the diffusion evaluations against ``ΔW`` and ``I_(1,0)/h``; ``c0``/``c1`` are the time nodes
    of the drift/diffusion evaluations.  See the module docstring for the scheme.
    """

    name: str
    c0: Vec
    c1: Vec
    A0: Mat
    B0: Mat
    alpha: Vec
    beta1: Vec
    beta2: Vec
    order: float
    weak_order: float
    reference: str

    @property
    def stages(self) -> int:
        return len(self.alpha)


# --------------------------------------------------------------------------------------------
# SRI methods (4 stages)
# --------------------------------------------------------------------------------------------

#: SRIW1 (Rößler 2010 "SRI1W1"), StochasticDiffEq ``constructSRIW1``; the default of ``SRI``.
#: Note ``beta2 = -[1, -4/3, 1/3, 0]`` as written there.
SRIW1 = SRITableau(
    name="SRIW1",
    c0=(0.0, 3 / 4, 0.0, 0.0),
    c1=(0.0, 1 / 4, 1.0, 1 / 4),
    A0=(
        (0.0, 0.0, 0.0, 0.0),
        (3 / 4, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
    ),
    A1=(
        (0.0, 0.0, 0.0, 0.0),
        (1 / 4, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 1 / 4, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0, 0.0),
        (3 / 2, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
    ),
    B1=(
        (0.0, 0.0, 0.0, 0.0),
        (1 / 2, 0.0, 0.0, 0.0),
        (-1.0, 0.0, 0.0, 0.0),
        (-5.0, 3.0, 1 / 2, 0.0),
    ),
    alpha=(1 / 3, 2 / 3, 0.0, 0.0),
    beta1=(-1.0, 4 / 3, 2 / 3, 0.0),
    beta2=(-1.0, 4 / 3, -1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0),
    beta4=(-2.0, 5 / 3, -2 / 3, 1.0),
    order=1.5,
    weak_order=2.0,
    reference=_ROSSLER_2010,
)

#: SRIW2 (Rößler 2010 "SRI2W1"), StochasticDiffEq ``constructSRIW2`` / ``SRIW2ConstantCache``.
SRIW2 = SRITableau(
    name="SRIW2",
    c0=(0.0, 1.0, 1 / 2, 0.0),
    c1=(0.0, 1 / 4, 1.0, 1 / 4),
    A0=(
        (0.0, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (1 / 4, 1 / 4, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
    ),
    A1=(
        (0.0, 0.0, 0.0, 0.0),
        (1 / 4, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 1 / 4, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        (1.0, 1 / 2, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
    ),
    B1=(
        (0.0, 0.0, 0.0, 0.0),
        (-1 / 2, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (2.0, -1.0, 1 / 2, 0.0),
    ),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0.0),
    beta1=(-1.0, 4 / 3, 2 / 3, 0.0),
    beta2=(1.0, -4 / 3, 1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0),
    beta4=(-2.0, 5 / 3, -2 / 3, 1.0),
    order=1.5,
    weak_order=3.0,
    reference=_ROSSLER_2010,
)

#: SOSRI, StochasticDiffEq ``SOSRIConstantCache`` (= ``constructSRIOpt1``, "Opti6-12-11-10-01-47").
#: ``c0``/``c1`` are the cache's literals (the row sums of ``A0``/``A1``).
SOSRI = SRITableau(
    name="SOSRI",
    c0=(0.0, -0.04199224421316468, 0.7898405466170333, 3.7504010171562823),
    c1=(0.0, 0.26204282091330466, 0.05879875232001766, 0.758661169101175),
    A0=(
        (0.0, 0.0, 0.0, 0.0),
        (-0.04199224421316468, 0.0, 0.0, 0.0),
        (2.842612915017106, -2.0527723684000727, 0.0, 0.0),
        (4.338237071435815, -2.8895936137439793, 2.3017575594644466, 0.0),
    ),
    A1=(
        (0.0, 0.0, 0.0, 0.0),
        (0.26204282091330466, 0.0, 0.0, 0.0),
        (0.20903646383505375, -0.1502377115150361, 0.0, 0.0),
        (0.05836595312746999, 0.6149440396332373, 0.08535117634046772, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0, 0.0),
        (-0.21641093549612528, 0.0, 0.0, 0.0),
        (1.5336352863679572, 0.26066223492647056, 0.0, 0.0),
        (-1.0536037558179159, 1.7015284721089472, -0.20725685784180017, 0.0),
    ),
    B1=(
        (0.0, 0.0, 0.0, 0.0),
        (-0.5119011827621657, 0.0, 0.0, 0.0),
        (2.67767339866713, -4.9395031322250995, 0.0, 0.0),
        (0.15580956238299215, 3.2361551006624674, -1.4223118283355949, 0.0),
    ),
    alpha=(1.140099274172029, -0.6401334255743456, 0.4736296532772559, 0.026404498125060714),
    beta1=(-1.8453464565104432, 2.688764531100726, -0.2523866501071323, 0.40896857551684956),
    beta2=(0.4969658141589478, -0.5771202869753592, -0.12919702470322217, 0.2093514975196336),
    beta3=(2.8453464565104425, -2.688764531100725, 0.2523866501071322, -0.40896857551684945),
    beta4=(0.11522663875443433, -0.57877086147738, 0.2857851028163886, 0.17775911990655704),
    order=1.5,
    weak_order=2.0,
    reference=_RACKAUCKAS_NIE_2018,
)

#: SOSRI2, StochasticDiffEq ``SOSRI2ConstantCache`` (= ``constructSRIOpt2``).
SOSRI2 = SRITableau(
    name="SOSRI2",
    c0=(0.0, 0.13804532298278663, 0.9999999999999992, 0.9999999999999994),
    c1=(0.0, 0.45605532163856893, 0.999999999999996, 0.9999999999999962),
    A0=(
        (0.0, 0.0, 0.0, 0.0),
        (0.13804532298278663, 0.0, 0.0, 0.0),
        (0.5818361298250374, 0.4181638701749618, 0.0, 0.0),
        (0.4670018408674211, 0.8046204792187386, -0.27162232008616016, 0.0),
    ),
    A1=(
        (0.0, 0.0, 0.0, 0.0),
        (0.45605532163856893, 0.0, 0.0, 0.0),
        (0.7555807846451692, 0.24441921535482677, 0.0, 0.0),
        (0.6981181143266059, 0.3453277086024727, -0.04344582292908241, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0, 0.0),
        (0.08852381537667678, 0.0, 0.0, 0.0),
        (1.0317752458971061, 0.4563552922077882, 0.0, 0.0),
        (1.73078280444124, -0.46089678470929774, -0.9637509618944188, 0.0),
    ),
    B1=(
        (0.0, 0.0, 0.0, 0.0),
        (0.6753186815412179, 0.0, 0.0, 0.0),
        (-0.07452812525785148, -0.49783736486149366, 0.0, 0.0),
        (-0.5591906709928903, 0.022696571806569924, -0.8984927888368557, 0.0),
    ),
    alpha=(-0.15036858140642623, 0.7545275856696072, 0.686995463807979, -0.2911544680711602),
    beta1=(-0.45315689727309133, 0.8330937231303951, 0.3792843195533544, 0.24077885458934192),
    beta2=(-0.4994383733810986, 0.9181786186154077, -0.25613778661003145, -0.16260245862427797),
    beta3=(1.4531568972730915, -0.8330937231303933, -0.3792843195533583, -0.24077885458934023),
    beta4=(-0.4976090683622265, 0.9148155835648892, -1.4102107084476505, 0.9930041932449877),
    order=1.5,
    weak_order=2.0,
    reference=_RACKAUCKAS_NIE_2018,
)

# --------------------------------------------------------------------------------------------
# SRA methods (2 or 3 stages)
# --------------------------------------------------------------------------------------------

#: SRA1 (Rößler 2010), StochasticDiffEq ``constructSRA1``; the default of ``SRA``.
SRA1 = SRATableau(
    name="SRA1",
    c0=(0.0, 3 / 4),
    c1=(1.0, 0.0),
    A0=(
        (0.0, 0.0),
        (3 / 4, 0.0),
    ),
    B0=(
        (0.0, 0.0),
        (3 / 2, 0.0),
    ),
    alpha=(1 / 3, 2 / 3),
    beta1=(1.0, 0.0),
    beta2=(-1.0, 1.0),
    order=1.5,
    weak_order=2.0,
    reference=_ROSSLER_2010,
)

#: SRA2 (Rößler 2010), StochasticDiffEq ``constructSRA2`` / ``SRA2ConstantCache``.
SRA2 = SRATableau(
    name="SRA2",
    c0=(0.0, 3 / 4),
    c1=(1 / 3, 1.0),
    A0=(
        (0.0, 0.0),
        (3 / 4, 0.0),
    ),
    B0=(
        (0.0, 0.0),
        (3 / 2, 0.0),
    ),
    alpha=(1 / 3, 2 / 3),
    beta1=(0.0, 1.0),
    beta2=(3 / 2, -3 / 2),
    order=1.5,
    weak_order=2.0,
    reference=_ROSSLER_2010,
)

#: SRA3 (Rößler 2010), StochasticDiffEq ``constructSRA3`` / ``SRA3ConstantCache``.
SRA3 = SRATableau(
    name="SRA3",
    c0=(0.0, 1.0, 1 / 2),
    c1=(1.0, 0.0, 0.0),
    A0=(
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0),
        (1 / 4, 1 / 4, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (1.0, 1 / 2, 0.0),
    ),
    alpha=(1 / 6, 1 / 6, 2 / 3),
    beta1=(1.0, 0.0, 0.0),
    beta2=(-1.0, 1.0, 0.0),
    order=1.5,
    weak_order=3.0,
    reference=_ROSSLER_2010,
)

#: SOSRA, StochasticDiffEq ``constructSOSRA`` / ``SOSRAConstantCache``.
SOSRA = SRATableau(
    name="SOSRA",
    c0=(0.0, 0.6923962376159507, 1.0),
    c1=(0.0, 0.041248171110700504, 1.0),
    A0=(
        (0.0, 0.0, 0.0),
        (0.6923962376159507, 0.0, 0.0),
        (-3.1609142252828395, 4.1609142252828395, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0),
        (1.3371632704399763, 0.0, 0.0),
        (1.442371048468624, 1.8632741501139225, 0.0),
    ),
    alpha=(0.2889874966892885, 0.6859880440839937, 0.025024459226717772),
    beta1=(-16.792534242221663, 17.514995785380226, 0.27753845684143835),
    beta2=(0.4237535769069274, 0.6010381474428539, -1.0247917243497813),
    order=1.5,
    weak_order=2.0,
    reference=_RACKAUCKAS_NIE_2018,
)

#: SOSRA2, StochasticDiffEq ``constructSOSRA2`` / ``SOSRA2ConstantCache``.
SOSRA2 = SRATableau(
    name="SOSRA2",
    c0=(0.0, 1.0, 1.0),
    c1=(0.0, 1.0, 1.0),
    A0=(
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0),
        (0.9511849235504364, 0.04881507644956362, 0.0),
    ),
    B0=(
        (0.0, 0.0, 0.0),
        (0.7686101171003622, 0.0, 0.0),
        (0.43886792994934987, 0.7490415909204886, 0.0),
    ),
    alpha=(0.4999999999999998, -0.9683897375354181, 1.4683897375354185),
    beta1=(0.0, 0.92438032145683, 0.07561967854316998),
    beta2=(1.0, -0.8169981105823436, -0.18300188941765633),
    order=1.5,
    weak_order=2.0,
    reference=_RACKAUCKAS_NIE_2018,
)

#: every SRI tableau by name
SRI_TABLEAUS: dict[str, SRITableau] = {t.name: t for t in (SRIW1, SRIW2, SOSRI, SOSRI2)}
#: every SRA tableau by name
SRA_TABLEAUS: dict[str, SRATableau] = {t.name: t for t in (SRA1, SRA2, SRA3, SOSRA, SOSRA2)}
