"""The ``autodiffeq`` command line: ``autodiffeq plugins [--json] [--strict]``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .registry import Registry


def _catalogue(reg: Registry) -> dict[str, Any]:
    plugins = []
    for info in reg.plugins():
        solvers = [s for s in reg.solvers() if s.plugin == info.name]
        backends = [b for b in reg.backends() if b.plugin == info.name]
        sens = [s for s in reg.sensitivities() if s.plugin == info.name]
        ens = [e for e in reg.ensembles() if e.plugin == info.name]
        plugins.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "solvers": [{"name": s.name, **s.capabilities()} for s in solvers],
                "backends": [{"name": b.name, **b.capabilities_dict()} for b in backends],
                "sensitivities": [
                    {
                        "name": s.name,
                        "mode": s.mode,
                        "problem_types": list(s.problem_types),
                        "solver_families": None
                        if s.solver_families is None
                        else list(s.solver_families),
                        "backends": None if s.backends is None else list(s.backends),
                        "autograd_families": list(s.autograd_families),
                        "stiff": s.stiff,
                        "mass_matrix": s.mass_matrix,
                        "events": s.events,
                        "options": list(s.options),
                        "default_priority": s.default_priority,
                    }
                    for s in sens
                ],
                "ensembles": [{"name": e.name, "options": list(e.options),
                               "traced": e.traced,
                               "backends": None if e.backends is None else list(e.backends),
                               "description": e.description} for e in ens],
            }
        )
    failed = [
        {
            "name": f.name,
            "distribution": f.distribution,
            "version": f.version,
            "phase": f.phase,
            "error": f.error,
        }
        for f in reg.failed_plugins()
    ]
    problem_types = [
        {"name": p.name, "class": f"{p.problem_class.__module__}.{p.problem_class.__name__}",
         "plugin": p.plugin, "description": p.description}
        for p in reg.problem_types()
    ]
    return {"plugins": plugins, "problem_types": problem_types, "failed": failed}


def _print_text(cat: dict[str, Any]) -> None:
    out = sys.stdout.write
    for plugin in cat["plugins"]:
        dist = plugin["distribution"] or "?"
        version = plugin["version"] or "?"
        out(f"{plugin['name']}  ({dist} {version})\n")
        for s in plugin["solvers"]:
            adaptive = "adaptive" if s["adaptive"] else "fixed-step"
            err = f", error order {s['error_order']}" if s["error_order"] is not None else ""
            stiff = ", stiff" if s["stiff"] else ""
            noise = ""
            if s.get("noise_types"):  # stochastic solvers: weak order, noise, interpretation
                noise = (f" weak-order={s['weak_order']} noise={','.join(s['noise_types'])} "
                         f"{'/'.join(s.get('interpretations') or ())}")
            out(
                f"  solver   {s['name']:<12} family={s['family']} order={s['order']} "
                f"{adaptive}{err} dense-order={s['dense_order']}{stiff} "
                f"problems={','.join(s['problem_types'])}{noise}\n"
            )
        for b in plugin["backends"]:
            status = "available" if b["available"] else f"unavailable: {b['unavailable_reason']}"
            out(f"  backend  {b['name']:<12} device={b['device']} {status}\n")
        for s in plugin["sensitivities"]:
            families = ",".join(s["solver_families"] or ["any"])
            backends = ",".join(s["backends"] or ["any"])
            stiff = "" if s["stiff"] else " not-for-stiff"
            if not s["mass_matrix"]:
                stiff += " no-mass-matrix"
            if s["autograd_families"]:
                stiff += f" ({','.join(s['autograd_families'])}: autograd backends only)"
            if s["events"]:
                stiff += " events"
            out(
                f"  sensitivity {s['name']:<20} mode={s['mode']} families={families} "
                f"backends={backends}{stiff}\n"
            )
        for e in plugin["ensembles"]:
            extra = " gradients" if e["traced"] else ""
            if e["options"]:
                extra += f" options={','.join(e['options'])}"
            if e["backends"]:
                extra += f" backends={','.join(e['backends'])}"
            out(f"  ensemble {e['name']:<11}{extra}  {e['description']}\n")
    out("problem types:\n")
    for p in cat["problem_types"]:
        out(f"  {p['name']:<8} {p['class']}  ({p['plugin']})\n")
    if cat["failed"]:
        out("failed plugins:\n")
        for f in cat["failed"]:
            out(f"  {f['name']}  ({f['distribution'] or '?'}): {f['phase']} failed: {f['error']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autodiffeq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list plugins and what they registered")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument(
        "--strict", action="store_true", help="fail (exit 1) if any plugin fails to load"
    )
    args = parser.parse_args(argv)
    if args.command == "plugins":
        reg = Registry(entry_points=True, strict=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failures are listed in the output instead
            cat = _catalogue(reg)
        try:
            if args.json:
                json.dump(cat, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                _print_text(cat)
            sys.stdout.flush()
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stderr.close()
            return 0
        return 1 if (args.strict and cat["failed"]) else 0
    return 2
