"""Core v2 contracts: the request/adapter pipeline, problem types as registered specs,
controller and norm objects, the stop schedule, the live dense history, step observers,
composites recorded by the driver, seeds, stepper counters, and input checks found in review.

Truth comes from analytic solutions (u' = -u, the harmonic oscillator) and from the
definitions of the contracts themselves (what an observer must see), never from earlier output.
"""

from __future__ import annotations

import math
import pickle
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import autodiffeq as ade
from autodiffeq.controller import PIController, PredictiveController
from autodiffeq.driver import StopSchedule
from autodiffeq.request import PreparedSolve
from autodiffeq.stepper import RHS


def decay(u, p, t):
    return -u


def oscillator(u, p, t):
    return anp.stack([u[1], -u[0]])


# --------------------------------------------------------------------------- controllers
@pytest.mark.parametrize("controller", ["PI", "predictive", PIController, PredictiveController(),
                                        PIController(beta1=0.14, beta2=0.08)])
def test_controllers_as_objects_keep_the_tolerance(controller):
    prob = ade.ODEProblem(oscillator, np.array([0.0, 1.0]), (0.0, 10.0))
    sol = ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10, controller=controller)
    exact = np.array([math.sin(10.0), math.cos(10.0)])
    # global error of an order-5 method at rtol 1e-8 over ~1.6 periods: a few hundred rtol
    assert np.max(np.abs(sol.u[-1] - exact)) < 1e3 * 1e-8
    assert sol.retcode == "Success"


def test_the_default_controller_is_the_solvers_and_an_instance_is_not_shared():
    prob = ade.ODEProblem(oscillator, np.array([0.0, 1.0]), (0.0, 10.0))
    default = ade.solve(prob, "Rodas5P", rtol=1e-6)
    predictive = ade.solve(prob, "Rodas5P", rtol=1e-6, controller="predictive")
    assert default.stats.naccept == predictive.stats.naccept
    assert np.array_equal(default.t, predictive.t)
    ctrl = PIController()
    a = ade.solve(prob, "Tsit5", rtol=1e-6, controller=ctrl)
    b = ade.solve(prob, "Tsit5", rtol=1e-6, controller=ctrl)   # fresh state per solve
    assert np.array_equal(a.t, b.t)


class ConstantStepController(ade.Controller):
    """Accepts every step and never changes dt: a fixed step through the controller API."""

    def init(self, k):
        self.k = k

    def adapt(self, eest, dt):
        return True, dt


def test_a_user_controller_is_used():
    prob = ade.ODEProblem(decay, np.array([1.0]), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", dt=0.125, controller=ConstantStepController())
    assert np.allclose(np.diff(sol.t), 0.125, rtol=0, atol=8 * np.finfo(float).eps)
    with pytest.raises(ade.InvalidType, match="controller"):
        ade.solve(prob, "Tsit5", controller=3)
    with pytest.raises(ade.UnknownName, match="controller"):
        ade.solve(prob, "Tsit5", controller="PID")


class MaxNorm(ade.ErrorNorm):
    """The max norm of err / (atol + rtol |u_new|)."""

    def __init__(self, rtol, atol):
        self.rtol, self.atol = rtol, atol

    def __call__(self, u_new, err):
        return float(np.max(np.abs(err) / (self.atol + self.rtol * np.abs(u_new))))


def test_a_pluggable_norm_is_used_and_is_stricter_than_rms():
    prob = ade.ODEProblem(oscillator, np.array([0.0, 1.0]), (0.0, 10.0))
    rms = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8)
    mx = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8, internalnorm=MaxNorm(1e-6, 1e-8))
    # max over 2 components >= RMS, so the max norm never allows larger steps on average
    assert mx.stats.naccept >= rms.stats.naccept
    exact = np.array([math.sin(10.0), math.cos(10.0)])
    assert np.max(np.abs(mx.u[-1] - exact)) < 1e3 * 1e-6
    with pytest.raises(ade.InvalidType, match="internalnorm"):
        ade.solve(prob, "Tsit5", internalnorm=lambda e: 0.0)


# --------------------------------------------------------------------------- stops
def test_stop_schedule_accepts_new_stops_in_the_direction_of_integration():
    forward = StopSchedule(1.0, [0.5, 0.2], 1.0)
    assert forward.next == 0.2
    forward.add(0.1, t_now=0.0)
    forward.add(1.5, t_now=0.0)  # beyond the end: ignored
    forward.add(0.2, t_now=0.0)  # already there
    assert [forward.pop() for _ in range(3)] == [0.1, 0.2, 0.5]
    assert forward.next == 1.0
    backward = StopSchedule(-1.0, [0.5, 0.2], 0.0)
    backward.add(0.7, t_now=1.0)
    assert [backward.pop() for _ in range(3)] == [0.7, 0.5, 0.2]


def test_stops_added_during_the_solve_are_stepped_onto():
    """A delay-equation-like consumer adds t + 0.3 after each stop it reaches."""
    added = []

    class Propagate:
        def on_step(self, t, t_new, u, u_new, stepper, component):
            if t_new in added or t_new == 0.3:
                nxt = round(t_new + 0.3, 12)
                if nxt < 2.0:
                    self.schedule.add(nxt, t_new)
                    added.append(nxt)

    obs = Propagate()
    reg = ade.Registry(entry_points=True)

    class Adapter(type(reg.problem_types()[0].adapter)):
        def prepare(self, request):
            prepared = super().prepare(request)
            prepared.stop_consumers = (lambda s: setattr(obs, "schedule", s),)
            return prepared

    spec = ade.ProblemTypeSpec("DelayLike", DelayLikeProblem, Adapter())

    class Plugin:
        @ade.hookimpl
        def autodiffeq_register_problem_types(self, register):
            register(spec)

        @ade.hookimpl
        def autodiffeq_register_solvers(self, register):
            tsit5 = ade.registry().solver("Tsit5")
            register(ade.SolverSpec(name="Tsit5Delay", factory=tsit5.factory,
                                    family="explicit_rk", order=5, adaptive=True,
                                    error_order=4, dense_order=4,
                                    problem_types=("DelayLike",)))

    reg.register_plugin(Plugin(), name="delay_like")
    prob = DelayLikeProblem(decay, np.array([1.0]), (0.0, 2.0))
    sol = ade.solve(prob, "Tsit5Delay", tstops=[0.3], observers=[obs], registry=reg,
                    rtol=1e-4)
    assert added and all(np.any(sol.t == t) for t in added)
    assert abs(sol.u[-1, 0] - math.exp(-2.0)) < 1e-3


class DelayLikeProblem(ade.ODEProblem):
    problem_type = "DelayLike"


# --------------------------------------------------------------------------- problem types
class ScaledProblem:
    """A toy problem type registered by a plugin: u' = scale * f(u, p, t)."""

    problem_type = "Scaled"

    def __init__(self, f, u0, tspan, scale):
        self.f, self.u0, self.tspan, self.scale = f, np.asarray(u0, float), tuple(tspan), scale
        self.p = None
        self.mass_matrix = None

    @property
    def shape(self):
        return self.u0.shape


class ScaledAdapter:
    def requirements(self, prob):
        return (ade.Requirement("adaptive", "adaptive stepping"),)

    def sensitivity_requirements(self, prob):
        return ()

    def traced(self, prob):
        return False

    def prepare(self, request):
        prob = request.prob
        f = prob.f

        def scaled(u, p, t):
            return prob.scale * f(u, p, t)

        rhs = RHS(scaled, None, request.shape, request.dtype, request.backend, prob,
                  registry=request.registry)
        return PreparedSolve(rhs=rhs, u0=request.u0, f0=rhs.f(request.u0, request.t0))


def _scaled_registry():
    reg = ade.Registry(entry_points=True)
    tsit5 = reg.solver("Tsit5")
    rk4 = reg.solver("RK4")

    class Plugin:
        @ade.hookimpl
        def autodiffeq_register_problem_types(self, register):
            register(ade.ProblemTypeSpec("Scaled", ScaledProblem, ScaledAdapter(),
                                         description="u' = scale f"))

        @ade.hookimpl
        def autodiffeq_register_solvers(self, register):
            for base in (tsit5, rk4):
                register(ade.SolverSpec(
                    name=base.name + "Scaled", factory=base.factory, family=base.family,
                    order=base.order, adaptive=base.adaptive, error_order=base.error_order,
                    dense_order=base.dense_order, problem_types=("Scaled",)))

    reg.register_plugin(Plugin(), name="scaled")
    return reg


def test_a_problem_type_is_added_by_a_plugin_alone():
    reg = _scaled_registry()
    assert {s.name for s in reg.problem_types()} >= {"ODE", "Scaled"}
    prob = ScaledProblem(decay, [1.0], (0.0, 1.0), scale=2.0)
    sol = ade.solve(prob, "Tsit5Scaled", rtol=1e-10, atol=1e-12, registry=reg)
    assert abs(sol.u[-1, 0] - math.exp(-2.0)) < 1e-8
    assert sol(0.5)[0] == pytest.approx(math.exp(-1.0), rel=1e-7)
    # its requirements are data the registry checks: RK4 is not adaptive
    ok = reg.compatible("RK4Scaled", "numpy", None, prob)
    assert not ok and "adaptive stepping" in ok.reason
    with pytest.raises(ade.UnsupportedCombination, match="Scaled problems"):
        ade.solve(prob, "Tsit5", registry=reg)


def test_not_a_problem_names_the_registered_types():
    with pytest.raises(ade.InvalidType, match="ODEProblem"):
        ade.solve(object(), "Tsit5")


# --------------------------------------------------------------------------- observers/history
class Recorder:
    def __init__(self):
        self.steps = []
        self.jumps = []

    def on_step(self, t, t_new, u, u_new, stepper, component):
        self.steps.append((t, t_new, np.array(u_new), component))

    def on_jump(self, t, u_minus, u_plus, event):
        self.jumps.append((t, np.array(u_minus), np.array(u_plus), event.index))


def test_observers_see_every_accepted_step():
    obs = Recorder()
    prob = ade.ODEProblem(decay, np.array([1.0]), (0.0, 2.0))
    sol = ade.solve(prob, "Tsit5", rtol=1e-8, observers=[obs])
    assert len(obs.steps) == sol.stats.naccept
    assert [s[1] for s in obs.steps] == list(sol.t[1:])
    assert all(s[0] == prev[1] for prev, s in zip(obs.steps, obs.steps[1:]))
    assert all(s[3] is None for s in obs.steps)
    with pytest.raises(ade.InvalidType, match="observers"):
        ade.solve(prob, "Tsit5", observers=[object()])


def test_the_driver_records_which_component_of_a_composite_made_each_step():
    def rober(u, p, t):
        return np.array([-0.04 * u[0] + 1e4 * u[1] * u[2],
                         0.04 * u[0] - 1e4 * u[1] * u[2] - 3e7 * u[1] ** 2,
                         3e7 * u[1] ** 2])

    obs = Recorder()
    prob = ade.ODEProblem(rober, np.array([1.0, 0.0, 0.0]), (0.0, 1e3))
    sol = ade.solve(prob, "AutoTsit5Rodas5P", rtol=1e-6, atol=1e-10, observers=[obs])
    made = [s[3] for s in obs.steps]
    assert set(made) == {0, 1}          # explicit first, then stiff
    assert made[0] == 0 and made[-1] == 1
    # the dense output interpolates each step with its own component: compare with Radau
    from scipy.integrate import solve_ivp

    ref = solve_ivp(lambda t, u: rober(u, None, t), (0.0, 1e3), [1.0, 0.0, 0.0],
                    method="Radau", rtol=1e-10, atol=1e-14, dense_output=True)
    times = np.array([1e-3, 0.3, 10.0, 500.0])
    got = sol(times)
    want = ref.sol(times).T
    # the global error of a solve at rtol 1e-6 / atol 1e-10, with a margin of 200
    assert np.all(np.abs(got - want) <= 200 * (1e-6 * np.abs(want) + 1e-10))


def test_the_dense_history_is_readable_during_the_solve():
    """A consumer that reads u(t - 0.5) from the live history at every step end: it must
    equal the analytic solution there (the delay-equation lookup)."""
    seen = []

    class Lookup:
        history = None

        def on_step(self, t, t_new, u, u_new, stepper, component):
            s = t_new - 0.5
            if s > 0.0:
                seen.append((s, float(self.history(np.array([s]))[0, 0])))

    look = Lookup()
    reg = ade.Registry(entry_points=True)
    base = type(reg.problem_types()[0].adapter)
    tsit5 = reg.solver("Tsit5")

    class Adapter(base):
        def prepare(self, request):
            prepared = super().prepare(request)
            prepared.history_consumers = (lambda h: setattr(look, "history", h),)
            return prepared

    class Plugin:
        @ade.hookimpl
        def autodiffeq_register_problem_types(self, register):
            register(ade.ProblemTypeSpec("Looked", LookedProblem, Adapter()))

        @ade.hookimpl
        def autodiffeq_register_solvers(self, register):
            register(ade.SolverSpec(name="Tsit5Looked", factory=tsit5.factory,
                                    family="explicit_rk", order=5, adaptive=True,
                                    error_order=4, dense_order=4,
                                    problem_types=("Looked",)))

    reg.register_plugin(Plugin(), name="looked")
    prob = LookedProblem(decay, np.array([1.0]), (0.0, 3.0))
    ade.solve(prob, "Tsit5Looked", rtol=1e-9, atol=1e-12, saveat=[3.0], observers=[look],
              registry=reg)
    assert len(seen) > 5
    err = max(abs(v - math.exp(-s)) for s, v in seen)
    assert err < 1e-7   # dense order 4 at rtol 1e-9


class LookedProblem(ade.ODEProblem):
    problem_type = "Looked"


# --------------------------------------------------------------------------- seed, stats
class CountingStepper(ade.Stepper):
    """Euler steps that draw one random number per step and count them."""

    order = 1

    def step(self, t, u, dt):
        self.draws.append(float(self.rng.standard_normal()))
        self.stats["ndraws"] = len(self.draws)
        self.nf += 1
        return u + dt * self.rhs.f(u, t), None

    def init(self, t0, u0, f0):
        self.draws = getattr(self, "draws", [])


def _counting_registry():
    reg = ade.Registry(entry_points=True)
    reg.register(ade.SolverSpec(name="CountingEuler", factory=CountingStepper, order=1))
    return reg


def test_seed_reaches_the_stepper_and_unknown_counters_reach_stats():
    reg = _counting_registry()
    prob = ade.ODEProblem(decay, np.array([1.0]), (0.0, 1.0))
    a = ade.solve(prob, "CountingEuler", dt=0.1, seed=7, registry=reg)
    b = ade.solve(prob, "CountingEuler", dt=0.1, seed=7, registry=reg)
    assert a.stats.ndraws == 10 and a.stats["ndraws"] == 10 and "ndraws" in a.stats.keys()
    draws = ade.registry().get_backend("numpy").rng(7).standard_normal(10)
    assert a.stats.extra == {"ndraws": 10}
    assert b.stats.extra == a.stats.extra
    with pytest.raises(ade.InvalidArgument, match="seed"):
        ade.solve(prob, "CountingEuler", dt=0.1, seed=-1, registry=reg)
    # the draws themselves: the stepper's generator is the backend's, seeded with 7
    stepper_draws = []

    class Spy(CountingStepper):
        def step(self, t, u, dt):
            out = super().step(t, u, dt)
            stepper_draws.append(self.draws[-1])
            return out

    reg.register(ade.SolverSpec(name="SpyEuler", factory=Spy, order=1))
    ade.solve(prob, "SpyEuler", dt=0.1, seed=7, registry=reg)
    assert np.array_equal(stepper_draws, draws)


# --------------------------------------------------------------------------- start and input
def test_starting_step_at_a_late_time_is_resolvable():
    """u' = cos t from 2 pi with u0 = 1e-16: Hairer's estimate is ~1e-16, below what t can
    resolve there; bounded below, the solve succeeds and is accurate (u = 1e-16 + sin t)."""
    prob = ade.ODEProblem(lambda u, p, t: np.cos(t) + 0.0 * u, np.array([1e-16]),
                          (2 * np.pi, 4 * np.pi))
    sol = ade.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12)
    assert sol.retcode == "Success"
    assert abs(sol(3 * np.pi)[0] - math.sin(3 * np.pi)) < 1e-8


def test_time_first_argument_order_warns_once():
    def f_scipy(t, y, k):
        return -k * y

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ade.solve(ade.ODEProblem(f_scipy, 1.0, (0.0, 1.0), 2.0), "Tsit5")
        ade.solve(ade.ODEProblem(f_scipy, 1.0, (0.0, 1.0), 2.0), "Tsit5")
    msgs = [str(w.message) for w in caught if "f(u, p, t)" in str(w.message)]
    assert len(msgs) == 1 and "'t'" in msgs[0]


def test_numpy_parameters_move_to_the_backend():
    xp = pytest.importorskip("array_api_strict")
    prob = ade.ODEProblem(lambda u, p, t: -p * u, xp.asarray([1.0, 2.0]), (0.0, 1.0),
                          np.array([1.0, 2.0]))
    sol = ade.solve(prob, "Tsit5", backend="array_api_strict", rtol=1e-8)
    got = np.asarray(sol.backend.to_host(sol.u[-1, ...]))
    assert np.allclose(got, [math.exp(-1.0), 2 * math.exp(-2.0)], rtol=1e-6)


def test_float32_parameters_get_a_float32_gradient():
    def loss(p):
        prob = ade.ODEProblem(lambda u, p, t: -p * u, np.ones(2, dtype=np.float32),
                              (0.0, 1.0), p)
        return anp.sum(ade.solve(prob, "Tsit5", saveat=[1.0], rtol=1e-5).u)

    p = np.array([1.0, 2.0], dtype=np.float32)
    g = grad(loss)(p)
    assert g.dtype == np.float32
    # d/dp exp(-p) = -exp(-p), to float32 and rtol 1e-5 accuracy
    assert np.allclose(g, -np.exp(-p.astype(float)), rtol=1e-3)


# --------------------------------------------------------------------------- registry
def test_misspelled_hooks_are_reported():
    class Misspelled:
        @ade.hookimpl
        def autodiffeq_register_solver(self, register):  # missing "s"
            pass

    strict = ade.Registry(entry_points=False, strict=True)
    strict.register_plugin(Misspelled(), name="typo")
    with pytest.raises(ade.PluginError, match="autodiffeq_register_solver"):
        strict.solvers()
    lenient = ade.Registry(entry_points=False)
    lenient.register_plugin(Misspelled(), name="typo")
    with pytest.warns(ade.PluginLoadWarning, match="autodiffeq_register_solver"):
        lenient.solvers()


def test_specs_are_picklable():
    reg = ade.registry()
    for spec in [*reg.solvers(), *reg.backends(), *reg.sensitivities(), *reg.problem_types()]:
        clone = pickle.loads(pickle.dumps(spec))
        assert clone.name == spec.name


def test_composites_are_declared_and_differentiated_by_every_discrete_method():
    def rober(u, p, t):
        k1, k2, k3 = p
        return anp.stack([-k1 * u[0] + k3 * u[1] * u[2],
                          k1 * u[0] - k2 * u[1] ** 2 - k3 * u[1] * u[2],
                          k2 * u[1] ** 2])

    p0 = np.array([0.04, 3e7, 1e4])

    def loss(p, method):
        prob = ade.ODEProblem(rober, np.array([1.0, 0.0, 0.0]), (0.0, 10.0), p)
        sol = ade.solve(prob, "AutoTsit5Rodas5P", rtol=1e-7, atol=1e-10, saveat=[1.0, 10.0],
                        sensealg=method)
        return anp.sum(sol.u[:, 1] * 1e4 + sol.u[:, 2])

    assert ade.registry().solver("AutoTsit5Rodas5P").composite
    g = {m: grad(loss)(p0, m) for m in ("DiscreteAdjoint", "ReverseMode", "ForwardMode")}
    # the three differentiate the same discrete solution: equal to rounding
    scale = np.abs(g["DiscreteAdjoint"]) + 1e-300
    for m in ("ReverseMode", "ForwardMode"):
        assert np.max(np.abs(g[m] - g["DiscreteAdjoint"]) / scale) < 1e-8
    # and the continuous derivative to the solve's accuracy
    fs = grad(loss)(p0, "ForwardSensitivity")
    assert np.max(np.abs(fs - g["DiscreteAdjoint"]) / scale) < 1e-4


# --------------------------------------------------------------------------- event loops
def test_events_at_one_time_without_end_are_an_event_loop():
    """The guard behind retcode "EventLoop": MAX_EVENTS_AT_ONE_TIME events at one time (to
    the time resolution) make ``record`` report a loop; events that move on reset it. (A
    continuous callback cannot refire at once by construction: the one that fired has no
    sign until the state moves off its root; the guard catches what remains.)"""
    from autodiffeq.callbacks import MAX_EVENTS_AT_ONE_TIME, EventHandler

    be = ade.registry().get_backend("numpy")
    cb = ade.ContinuousCallback(lambda u, t: u[0])
    handler = EventHandler([cb], (1,), None, be, np.float64)
    u = np.zeros(1)
    assert not any(handler.record(0, 1.0, u, u) for _ in range(MAX_EVENTS_AT_ONE_TIME - 1))
    assert handler.record(0, 1.0 + 2e-16, u, u)
    assert not handler.record(0, 1.5, u, u)


def test_registered_problem_classes_are_package_attributes():
    class GadgetProblem(ade.ODEProblem):
        problem_type = "Gadget"

    class Plugin:
        @ade.hookimpl
        def autodiffeq_register_problem_types(self, register):
            register(ade.ProblemTypeSpec("Gadget", GadgetProblem, ScaledAdapter()))

    reg = ade.registry()
    reg.register_plugin(Plugin(), name="gadget_problem")
    try:
        assert ade.GadgetProblem is GadgetProblem
    finally:
        reg.unregister_plugin("gadget_problem")
    with pytest.raises(AttributeError, match="GadgetProblem"):
        _ = ade.GadgetProblem
