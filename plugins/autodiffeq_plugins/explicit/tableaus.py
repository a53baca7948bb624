"""The explicit Runge–Kutta methods shipped with autodiffeq, as :class:`ButcherTableau` data.

Every coefficient is taken from the cited literature (exact fractions where the source gives
them, else the double nearest to the source's high-precision value); nothing here is derived by
fitting.  The order claims (main, embedded and dense output) and the stability boundaries are
checked from first principles in ``tests/explicit/test_tableaus.py`` (rooted-tree order
conditions and the stability polynomial).

Index conventions follow ``tableau.py``: ``A`` is strictly lower triangular of shape (s, s),
``dense`` is ``P`` with ``b_j(theta) = sum_m P[j, m] theta**(m + 1)`` over the interpolation
stages ``k_1..k_s``, ``k_end`` (methods that are not FSAL) and the extra stages.  Literature
indices are 1-based and are kept 1-based in the ``{(i, j): a_ij}`` tables below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction as Fr

import numpy as np

from .tableau import ButcherTableau, ExtraStages

__all__ = [
    "BS3",
    "DP5",
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RALSTON",
    "RK4",
    "TABLEAUS",
    "TSIT5",
    "VERN7",
]

Number = Fr | float | int


def _vec(values: Sequence[Number]) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=np.float64)


def _lower(rows: Sequence[Sequence[Number]]) -> np.ndarray:
    """Strictly lower-triangular ``A`` from its sub-diagonal rows (row ``i`` has ``i`` entries)."""
    s = len(rows)
    a = np.zeros((s, s), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != i:
            raise ValueError(f"row {i} of A must have {i} entries, got {len(row)}")
        a[i, :i] = [float(v) for v in row]
    return a


def _sparse(
    shape: tuple[int, int], entries: Mapping[tuple[int, int], Number], first_row: int = 1
) -> np.ndarray:
    """Matrix from 1-based literature entries ``{(i, j): a_ij}``; row ``first_row`` is row 0."""
    a = np.zeros(shape, dtype=np.float64)
    for (i, j), v in entries.items():
        a[i - first_row, j - 1] = float(v)
    return a


def _difference(b: Sequence[Number], b_hat: Sequence[Number]) -> np.ndarray:
    """``b - b_hat``, formed exactly when both are exact."""
    return _vec([x - y for x, y in zip(b, b_hat, strict=True)])


def _dense(n_stages: int, rows: Mapping[int, Sequence[Number]]) -> np.ndarray:
    """``P`` from 1-based stage rows ``{j: [coef of theta, theta**2, ...]}`` (others zero)."""
    degree = max(len(r) for r in rows.values())
    p = np.zeros((n_stages, degree), dtype=np.float64)
    for j, coeffs in rows.items():
        p[j - 1, : len(coeffs)] = [float(v) for v in coeffs]
    return p


# --------------------------------------------------------------------------------------------
# Classical fixed-step methods (Hairer, Nørsett & Wanner, Solving ODEs I, Sect. II.1).
# --------------------------------------------------------------------------------------------

EULER = ButcherTableau(
    name="Euler",
    c=_vec([0]),
    A=_lower([[]]),
    b=_vec([1]),
    order=1,
    dense_order=1,
    source="L. Euler, Institutionum calculi integralis (1768); HNW I, Sect. II.1.",
    description="Explicit (forward) Euler method, order 1; cubic Hermite dense output.",
)

MIDPOINT = ButcherTableau(
    name="Midpoint",
    c=_vec([0, Fr(1, 2)]),
    A=_lower([[], [Fr(1, 2)]]),
    b=_vec([0, 1]),
    order=2,
    dense_order=2,
    source="C. Runge, Math. Ann. 46 (1895) 167-178; HNW I, Sect. II.1, eq. (1.3).",
    description="Explicit midpoint rule, order 2; cubic Hermite dense output.",
)

HEUN = ButcherTableau(
    name="Heun",
    c=_vec([0, 1]),
    A=_lower([[], [1]]),
    b=_vec([Fr(1, 2), Fr(1, 2)]),
    order=2,
    # Embedded forward Euler: b_hat = (1, 0).
    b_error=_difference([Fr(1, 2), Fr(1, 2)], [1, 0]),
    error_order=1,
    dense_order=2,
    stability_boundary=2.0,
    source="K. Heun, Z. Math. Phys. 45 (1900) 23-38; HNW I, Sect. II.1 (Heun-Euler 2(1) pair).",
    description="Heun's (explicit trapezoidal) method with embedded Euler 2(1) error estimate.",
)

RALSTON = ButcherTableau(
    name="Ralston",
    c=_vec([0, Fr(2, 3)]),
    A=_lower([[], [Fr(2, 3)]]),
    b=_vec([Fr(1, 4), Fr(3, 4)]),
    order=2,
    dense_order=2,
    source="A. Ralston, Math. Comp. 16 (1962) 431-437 (minimum error bound, c2 = 2/3).",
    description="Ralston's minimum-error two-stage method, order 2; cubic Hermite dense output.",
)

RK4 = ButcherTableau(
    name="RK4",
    c=_vec([0, Fr(1, 2), Fr(1, 2), 1]),
    A=_lower([[], [Fr(1, 2)], [0, Fr(1, 2)], [0, 0, 1]]),
    b=_vec([Fr(1, 6), Fr(1, 3), Fr(1, 3), Fr(1, 6)]),
    order=4,
    dense_order=3,
    source="W. Kutta, Z. Math. Phys. 46 (1901) 435-453; HNW I, Sect. II.1, Table 1.2.",
    description="The classic fourth-order Runge-Kutta method; cubic Hermite dense output.",
)

# --------------------------------------------------------------------------------------------
# Bogacki-Shampine 3(2), FSAL.  P. Bogacki & L. F. Shampine, "A 3(2) pair of Runge-Kutta
# formulas", Appl. Math. Lett. 2 (1989) 321-325 (as in SciPy's RK23).
# --------------------------------------------------------------------------------------------

_BS3_B = [Fr(2, 9), Fr(1, 3), Fr(4, 9), 0]
_BS3_B_HAT = [Fr(7, 24), Fr(1, 4), Fr(1, 3), Fr(1, 8)]

BS3 = ButcherTableau(
    name="BS3",
    c=_vec([0, Fr(1, 2), Fr(3, 4), 1]),
    A=_lower([[], [Fr(1, 2)], [0, Fr(3, 4)], _BS3_B[:3]]),
    b=_vec(_BS3_B),
    order=3,
    b_error=_difference(_BS3_B, _BS3_B_HAT),
    error_order=2,
    fsal=True,
    dense=None,
    dense_order=3,
    stability_boundary=2.51,
    source=(
        "P. Bogacki, L. F. Shampine, A 3(2) pair of Runge-Kutta formulas, "
        "Appl. Math. Lett. 2 (1989) 321-325."
    ),
    description="Bogacki-Shampine 3(2) FSAL pair; cubic Hermite dense output (order 3).",
)

# --------------------------------------------------------------------------------------------
# Dormand-Prince 5(4), FSAL, with Shampine's 4th-order continuous extension (the dense output
# of Hairer's DOPRI5; P as in SciPy's RK45).
# --------------------------------------------------------------------------------------------

_DP5_B = [Fr(35, 384), 0, Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84), 0]
_DP5_B_HAT = [
    Fr(5179, 57600),
    0,
    Fr(7571, 16695),
    Fr(393, 640),
    Fr(-92097, 339200),
    Fr(187, 2100),
    Fr(1, 40),
]

DP5 = ButcherTableau(
    name="DP5",
    c=_vec([0, Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), 1, 1]),
    A=_lower(
        [
            [],
            [Fr(1, 5)],
            [Fr(3, 40), Fr(9, 40)],
            [Fr(44, 45), Fr(-56, 15), Fr(32, 9)],
            [Fr(19372, 6561), Fr(-25360, 2187), Fr(64448, 6561), Fr(-212, 729)],
            [Fr(9017, 3168), Fr(-355, 33), Fr(46732, 5247), Fr(49, 176), Fr(-5103, 18656)],
            _DP5_B[:6],
        ]
    ),
    b=_vec(_DP5_B),
    order=5,
    b_error=_difference(_DP5_B, _DP5_B_HAT),
    error_order=4,
    fsal=True,
    dense=_dense(
        7,
        {
            1: [
                1,
                Fr(-8048581381, 2820520608),
                Fr(8663915743, 2820520608),
                Fr(-12715105075, 11282082432),
            ],
            3: [
                0,
                Fr(131558114200, 32700410799),
                Fr(-68118460800, 10900136933),
                Fr(87487479700, 32700410799),
            ],
            4: [
                0,
                Fr(-1754552775, 470086768),
                Fr(14199869525, 1410260304),
                Fr(-10690763975, 1880347072),
            ],
            5: [
                0,
                Fr(127303824393, 49829197408),
                Fr(-318862633887, 49829197408),
                Fr(701980252875, 199316789632),
            ],
            6: [
                0,
                Fr(-282668133, 205662961),
                Fr(2019193451, 616988883),
                Fr(-1453857185, 822651844),
            ],
            7: [
                0,
                Fr(40617522, 29380423),
                Fr(-110615467, 29380423),
                Fr(69997945, 29380423),
            ],
        },
    ),
    dense_order=4,
    stability_boundary=3.3,
    source=(
        "J. R. Dormand, P. J. Prince, A family of embedded Runge-Kutta formulae, "
        "J. Comput. Appl. Math. 6 (1980) 19-26; dense output: L. F. Shampine, Some practical "
        "Runge-Kutta formulas, Math. Comp. 46 (1986) 135-150 (HNW I, Sect. II.6, DOPRI5)."
    ),
    description="Dormand-Prince 5(4) FSAL pair with Shampine's 4th-order interpolant.",
)

# --------------------------------------------------------------------------------------------
# Tsitouras 5(4), FSAL, with its free 4th-order interpolant.  Coefficients: the doubles
# nearest to the high-precision values of OrdinaryDiffEq.jl (tsit_tableaus.jl).
# --------------------------------------------------------------------------------------------

_TSIT5_B = [
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
]
# b - b_hat, from the 80-digit values of b and b_hat (b_hat_7 = 1/66).
_TSIT5_B_ERROR = [
    0.0017800110522257714,
    0.0008164344596567469,
    -0.007880878010261995,
    0.1447110071732629,
    -0.5823571654525552,
    0.45808210592918697,
    -0.015151515151515152,
]

TSIT5 = ButcherTableau(
    name="Tsit5",
    c=_vec([0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1]),
    A=_lower(
        [
            [],
            [0.161],
            [-0.008480655492356989, 0.335480655492357],
            [2.8971530571054935, -6.359448489975075, 4.3622954328695815],
            [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
            [
                5.86145544294642,
                -12.92096931784711,
                8.159367898576159,
                -0.071584973281401,
                -0.028269050394068383,
            ],
            _TSIT5_B[:6],
        ]
    ),
    b=_vec(_TSIT5_B),
    order=5,
    b_error=_vec(_TSIT5_B_ERROR),
    error_order=4,
    fsal=True,
    dense=_dense(
        7,
        {
            1: [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
            2: [0.0, 0.13169999999999998, -0.2234, 0.1017],
            3: [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
            4: [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
            5: [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
            6: [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
            7: [0.0, 1.5, -4.0, 2.5],
        },
    ),
    dense_order=4,
    stability_boundary=3.5,
    source=(
        "Ch. Tsitouras, Runge-Kutta pairs of order 5(4) satisfying only the first column "
        "simplifying assumption, Comput. Math. Appl. 62 (2011) 770-775; digits as in "
        "OrdinaryDiffEq.jl (tsit_tableaus.jl)."
    ),
    description="Tsitouras 5(4) FSAL pair with its free 4th-order interpolant.",
)

# --------------------------------------------------------------------------------------------
# Verner's "most efficient" 7(6) pair (10 stages, not FSAL) with the 16-stage interpolant
# built from k_end = f(u_{n+1}) (Verner's stage 11, whose A-row is exactly b, so it is our
# k_end) and the five lazy extra stages 12..16.  Tableau in exact rationals, extra stages and
# interpolant as the doubles nearest to the 40-digit values, all as in OrdinaryDiffEq.jl
# (verner_tableaus.jl, Vern7).  Verner's 2024 notes on his coefficient files state that the
# originally posted order-7 interpolants of the RKV76.IIa pairs "satisfied some but not all
# conditions of order 7"; these coefficients are those, and verify as order 6 only.
# --------------------------------------------------------------------------------------------

_VERN7_C = [
    0,
    Fr(1, 200),
    Fr(49, 450),
    Fr(49, 300),
    Fr(911, 2000),
    Fr(3480084980, 5709648941),
    Fr(221, 250),
    Fr(37, 40),
    1,
    1,
]

_VERN7_A = {
    (2, 1): Fr(1, 200),
    (3, 1): Fr(-4361, 4050),
    (3, 2): Fr(2401, 2025),
    (4, 1): Fr(49, 1200),
    (4, 3): Fr(49, 400),
    (5, 1): Fr(2454451729, 3841600000),
    (5, 3): Fr(-9433712007, 3841600000),
    (5, 4): Fr(4364554539, 1920800000),
    (6, 1): Fr(
        -6187101755456742839167388910402379177523537620,
        2324599620333464857202963610201679332423082271,
    ),
    (6, 3): Fr(
        27569888999279458303270493567994248533230000,
        2551701010245296220859455115479340650299761,
    ),
    (6, 4): Fr(
        -37368161901278864592027018689858091583238040000,
        4473131870960004275166624817435284159975481033,
    ),
    (6, 5): Fr(
        1392547243220807196190880383038194667840000000,
        1697219131380493083996999253929006193143549863,
    ),
    (7, 1): Fr(11272026205260557297236918526339, 1857697188743815510261537500000),
    (7, 3): Fr(-48265918242888069, 1953194276993750),
    (7, 4): Fr(26726983360888651136155661781228, 1308381343805114800955157615625),
    (7, 5): Fr(-2090453318815827627666994432, 1096684189897834170412307919),
    (7, 6): Fr(
        1148577938985388929671582486744843844943428041509,
        1141532118233823914568777901158338927629837500000,
    ),
    (8, 1): Fr(1304457204588839386329181466225966641, 108211771565488329642169667802016000),
    (8, 3): Fr(-1990261989751005, 40001418792832),
    (8, 4): Fr(2392691599894847687194643439066780106875, 58155654089143548047476915856270826016),
    (8, 5): Fr(-1870932273351008733802814881998561250, 419326053051486744762255151208232123),
    (8, 6): Fr(
        1043329047173803328972823866240311074041739158858792987034783181,
        510851127745017966999893975119259285040213723744255237522144000,
    ),
    (8, 7): Fr(-311918858557595100410788125, 3171569057622789618800376448),
    (9, 1): Fr(17579784273699839132265404100877911157, 1734023495717116205617154737841023480),
    (9, 3): Fr(-18539365951217471064750, 434776548575709731377),
    (9, 4): Fr(
        447448655912568142291911830292656995992000,
        12511202807447096607487664209063950964109,
    ),
    (9, 5): Fr(
        -65907597316483030274308429593905808000000,
        15158061430635748897861852383197382130691,
    ),
    (9, 6): Fr(
        273847823027445129865693702689010278588244606493753883568739168819449761,
        136252034448398939768371761610231099586032870552034688235302796640584360,
    ),
    (9, 7): Fr(694664732797172504668206847646718750, 1991875650119463976442052358853258111),
    (9, 8): Fr(-19705319055289176355560129234220800, 72595753317320295604316217197876507),
    (10, 1): Fr(-511858190895337044664743508805671, 11367030248263048398341724647960),
    (10, 3): Fr(2822037469238841750, 15064746656776439),
    (10, 4): Fr(-23523744880286194122061074624512868000, 152723005449262599342117017051789699),
    (10, 5): Fr(10685036369693854448650967542704000000, 575558095977344459903303055137999707),
    (10, 6): Fr(
        -6259648732772142303029374363607629515525848829303541906422993,
        876479353814142962817551241844706205620792843316435566420120,
    ),
    (10, 7): Fr(17380896627486168667542032602031250, 13279937889697320236613879977356033),
}

_VERN7_B = [
    Fr(96762636172307789, 2051985304794103980),
    0,
    0,
    Fr(312188947591288252500000, 1212357694274963646019729),
    Fr(13550580884964304000000000000, 51686919683339547115937980629),
    Fr(
        72367769693133178898676076432831566019684378142853445230956642801,
        475600216991873963561768100160364792981629064220601844848928537580,
    ),
    Fr(1619421054120605468750, 3278200730370057108183),
    Fr(-66898316144057728000, 227310933007074849597),
    Fr(181081444637946577, 2226845467039736466),
    0,
]

_VERN7_B_HAT = [
    Fr(117807213929927, 2640907728177740),
    0,
    0,
    Fr(4758744518816629500000, 17812069906509312711137),
    Fr(1730775233574080000000000, 7863520414322158392809673),
    Fr(
        2682653613028767167314032381891560552585218935572349997,
        12258338284789875762081637252125169126464880985167722660,
    ),
    Fr(40977117022675781250, 178949401077111131341),
    0,
    0,
    Fr(2152106665253777, 106040260335225546),
]

# Extra stages 12..16 (stage 11 is k_end).  Columns 1..10 are k_1..k_10, column 11 is k_end,
# columns 12..15 the earlier extra stages.
_VERN7_EXTRA_C = [0.29, 0.125, 0.25, 0.53, 0.79]
_VERN7_EXTRA_A = {
    (12, 1): 0.0523222769159969,
    (12, 4): 0.22495861826705715,
    (12, 5): 0.017443709248776376,
    (12, 6): -0.007669379876829393,
    (12, 7): 0.03435896044073285,
    (12, 8): -0.0410209723009395,
    (12, 9): 0.025651133005205617,
    (12, 11): -0.0160443457,
    (13, 1): 0.053053341257859085,
    (13, 4): 0.12195301011401886,
    (13, 5): 0.017746840737602496,
    (13, 6): -0.0005928372667681495,
    (13, 7): 0.008381833970853752,
    (13, 8): -0.01293369259698612,
    (13, 9): 0.009412056815253861,
    (13, 11): -0.005353253107275676,
    (13, 12): -0.06666729992455811,
    (14, 1): 0.03887903257436304,
    (14, 4): -0.0024403203308301317,
    (14, 5): -0.0013928917214672623,
    (14, 6): -0.00047446291558680135,
    (14, 7): 0.00039207932413159514,
    (14, 8): -0.00040554733285128004,
    (14, 9): 0.00019897093147716726,
    (14, 11): -0.00010278198793179169,
    (14, 12): 0.03385661513870267,
    (14, 13): 0.1814893063199928,
    (15, 1): 0.05723681204690013,
    (15, 4): 0.22265948066761182,
    (15, 5): 0.12344864200186899,
    (15, 6): 0.04006332526666491,
    (15, 7): -0.05269894848581452,
    (15, 8): 0.04765971214244523,
    (15, 9): -0.02138895885042213,
    (15, 11): 0.015193891064036402,
    (15, 12): 0.12060546716289655,
    (15, 13): -0.022779423016187374,
    (16, 1): 0.051372038802756814,
    (16, 4): 0.5414214473439406,
    (16, 5): 0.350399806692184,
    (16, 6): 0.14193112269692182,
    (16, 7): 0.10527377478429423,
    (16, 8): -0.031081847805874016,
    (16, 9): -0.007401883149519145,
    (16, 11): -0.006377932504865363,
    (16, 12): -0.17325495908361865,
    (16, 13): -0.18228156777622026,
}

# Interpolant over the 16 interpolation stages (k_2, k_3, k_10 have zero weight).
_VERN7_P = {
    1: [
        1.0,
        -8.413387198332767,
        33.675508884490895,
        -70.80159089484886,
        80.64695108301298,
        -47.19413969837522,
        11.133813442539243,
    ],
    4: [
        0.0,
        8.754921980674396,
        -88.4596828699771,
        346.9017638429916,
        -629.2580030059837,
        529.6773755604193,
        -167.35886986514018,
    ],
    5: [
        0.0,
        8.913387586637922,
        -90.06081846893218,
        353.1807459217058,
        -640.6476819744374,
        539.2646279047156,
        -170.38809442991547,
    ],
    6: [
        0.0,
        5.1733120298478,
        -52.271115900055385,
        204.9853867374073,
        -371.8306118563603,
        312.9880934374529,
        -98.89290352172495,
    ],
    7: [
        0.0,
        16.79537744079696,
        -169.70040000059728,
        665.4937727009246,
        -1207.1638892336007,
        1016.1291515818546,
        -321.06001557237494,
    ],
    8: [
        0.0,
        -10.005997536098665,
        101.1005433052275,
        -396.47391512378437,
        719.1787707014183,
        -605.3681033918824,
        191.27439892797935,
    ],
    9: [
        0.0,
        2.764708833638599,
        -27.934602637390462,
        109.54779186137893,
        -198.7128113064482,
        167.26633571640318,
        -52.85010499525706,
    ],
    11: [
        0.0,
        -2.1696320280163506,
        22.016696037569876,
        -86.90152427798948,
        159.22388973861476,
        -135.9618306534588,
        43.792401183280006,
    ],
    12: [
        0.0,
        -4.890070188793804,
        22.75407737425176,
        -30.78034218537731,
        -2.797194317207249,
        31.369456637508403,
        -15.655927320381801,
    ],
    13: [
        0.0,
        10.862170929551967,
        -50.542971417827104,
        68.37148040407511,
        6.213326521632409,
        -69.68006323194157,
        34.776056794509195,
    ],
    14: [
        0.0,
        -11.37286691922923,
        130.79058078246717,
        -488.65113677785604,
        832.2148793276441,
        -664.7743368554426,
        201.79288044241662,
    ],
    15: [
        0.0,
        -5.919778732715007,
        63.27679965889219,
        -265.432682088738,
        520.1009254140611,
        -467.412109533902,
        155.3868452824017,
    ],
    16: [
        0.0,
        -10.492146197961823,
        105.35538525188011,
        -409.43975011988937,
        732.831448907654,
        -606.3044574733512,
        188.0495196316683,
    ],
}

VERN7 = ButcherTableau(
    name="Vern7",
    c=_vec(_VERN7_C),
    A=_sparse((10, 10), _VERN7_A),
    b=_vec(_VERN7_B),
    order=7,
    b_error=_difference(_VERN7_B, _VERN7_B_HAT),
    error_order=6,
    fsal=False,
    dense=_dense(16, _VERN7_P),
    # Order 6, not 7: all order-6 conditions hold to roundoff, several of order 7 fail by
    # ~1e-7 (see the note above and tests/explicit/test_tableaus.py).
    dense_order=6,
    extra=ExtraStages(
        c=_vec(_VERN7_EXTRA_C),
        A=_sparse((5, 16), _VERN7_EXTRA_A, first_row=12),
    ),
    stability_boundary=4.64,
    source=(
        "J. H. Verner, Numerically optimal Runge-Kutta pairs with interpolants, "
        "Numer. Algorithms 53 (2010) 383-396 ('most efficient' 7(6) pair, RKV76.IIa, with "
        "its originally posted interpolant); digits as in OrdinaryDiffEq.jl (verner_tableaus.jl)."
    ),
    description=(
        "Verner's efficient 7(6) pair with a lazy interpolant (5 extra stages); the interpolant "
        "verifies as order 6."
    ),
)

TABLEAUS: dict[str, ButcherTableau] = {
    t.name: t for t in (EULER, MIDPOINT, HEUN, RALSTON, RK4, BS3, DP5, TSIT5, VERN7)
}
