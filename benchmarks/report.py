"""Render BENCHMARKS.md from results JSON files (one section per run) and benchmarks/notes.md."""

from __future__ import annotations

import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHOD_NAMES = {
    "rwmh": "ours: batched RW-MH (`pls.sample`, kernel rwmh)",
    "ensemble": "ours: population MCMC (kernel ensemble)",
    "nuts": "ours: NUTS over N particles (kernel nuts)",
    "pyro_nuts_single": "Pyro `NUTS`, one chain, 1 particle (Bayes-TrEx)",
    "pyro_rw_single": "Pyro `RandomWalkKernel`, one chain, 1 particle",
    "prior_rejection": "exact rejection from the prior",
    "smc": "ours: tempered SMC (kernel smc)",
}


def order(path: Path):
    """results.json (quick, make bench) first, then full, then devices."""
    name = path.name
    return (
        0
        if name == "results.json"
        else 1
        if name == "results-population.json"
        else 2
        if name == "results-full.json"
        else 3,
        name,
    )


def _num(value, digits=3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "–"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_num(cell) if not isinstance(cell, str) else cell for cell in row) + " |" for row in rows
    ]
    return lines + [""]


def _ratio(entry: dict | None, key: str) -> str:
    if not entry:
        return "–"
    if entry[key] is None:
        return "neither had any"
    prefix = "≥ " if entry.get(key + "_at_least") else ""
    return prefix + _num(entry[key]) + "x"


def _machine(results: dict) -> list[str]:
    m = results["machine"]
    rows = [
        ["CPU", m.get("cpu_model")],
        ["cores", m.get("cpu_cores")],
        [
            "torch threads (intra / inter-op)",
            f"{m.get('torch_threads')} / {m.get('torch_interop_threads')}"
            + (f", chosen by {m['torch_threads_choice']}" if m.get("torch_threads_choice") else ""),
        ],
        ["device", m.get("device") + (f" ({m['gpu']})" if m.get("gpu") else "")],
        [
            "versions",
            f"python {m.get('python')}, torch {m.get('torch')}, pyro {m.get('pyro')}, "
            f"arviz {m.get('arviz')}, numpy {m.get('numpy')}, pplevelset {m.get('pplevelset')}",
        ],
        ["platform", m.get("platform")],
        ["commit", m.get("git_commit") or "–"],
        ["load average (1, 5, 15 min) at start", ", ".join(map(str, m.get("load_average_start", [])))],
        ["load average at end", ", ".join(map(str, m.get("load_average_end", [])))],
        ["started", m.get("started")],
        ["wall time", f"{m.get('wall_s', 0):.0f} s"],
    ]
    return [f"Command: `{m.get('command')}`", ""] + _table(["machine", ""], [[a, str(b)] for a, b in rows])


def _goals(results: dict) -> list[str]:
    rows = []
    for name, goal in results.get("goals", {}).items():
        if "ratios" in goal:
            measured = ", ".join(f"N={n}: {_num(r)}" for n, r in goal["ratios"].items())
        else:
            measured = (
                "no hits by either method, no ratio"
                if goal["ratio"] is None
                else ("≥ " if goal.get("ratio_is_lower_bound") else "") + _num(goal["ratio"]) + "x"
            )
            if "rhat_rwmh" in goal:
                measured += f", R-hat of ours {_num(goal['rhat_rwmh'])}"
        rows.append([name, measured, "**met**" if goal["met"] else "not met"])
    return _table(["goal", "measured", ""], rows) if rows else []


def _comparison(results: dict) -> list[str]:
    lines = []
    worlds = [key for key, value in results.items() if isinstance(value, dict) and "ambiguous" in value]
    for world in worlds:
        for target_name, block in results[world].items():
            details = block["details"]
            lines.append(
                f"#### {world}, {target_name} (`{block['spec']}`, alpha {block['alpha']:g}), "
                f"{block['budget_s']:g} s each"
            )
            lines.append("")
            rows = []
            for method, d in details.items():
                ratio = block["ratios"].get(method)
                rows.append(
                    [
                        METHOD_NAMES.get(method, method),
                        d["ess_per_s"],
                        d["rhat"],
                        d["hits_per_s"],
                        "1" if method == "rwmh" else _ratio(ratio, "ess_per_s"),
                        "1" if method == "rwmh" else _ratio(ratio, "hits_per_s"),
                        d["ess"],
                        d["hits"],
                        f"{d['chains']} x {d['draws']}",
                        d["elapsed_s"],
                    ]
                )
            lines += _table(
                [
                    "method",
                    "ESS/s",
                    "R-hat",
                    "hits/s",
                    "ours ÷ it, ESS/s",
                    "ours ÷ it, hits/s",
                    "ESS",
                    "hits",
                    "chains x draws",
                    "seconds",
                ],
                rows,
            )
            notes = []
            if "prior_rejection" in details:
                r = details["prior_rejection"]
                notes.append(
                    f"rejection: {r['accepted']:,} accepted of {r['proposed']:,} prior draws "
                    f"(log M = {r['bound']['log_bound']:.3f}); {r['prior_draws_within_tv']:,} prior draws "
                    f"fell within TV 0.1 whatever the acceptance"
                )
            if "smc" in details:
                s = details["smc"]
                notes.append(
                    f"SMC: {s['settings']['runs']} run(s) of {s['settings']['num_particles']} particles in "
                    f"{s['settings']['populations']} populations, temperatures {s['temperatures']}, "
                    f"{s['distinct_final_particles']:,} distinct final particles"
                )
            if "rwmh" in details:
                r = details["rwmh"]
                notes.append(
                    f"rwmh: {r['settings']['warmup']} warm-up + {r['settings']['steps']} steps, acceptance "
                    f"{r['acceptance_rate']:.2f}, burn-in check {'ok' if r['burn_in_ok'] else 'failed'}"
                )
            for key in ("nuts", "pyro_nuts_single", "pyro_rw_single"):
                if key in details:
                    d = details[key]
                    notes.append(f"{key}: {d['settings']['warmup']} warm-up iterations, {d['draws']} draws")
            lines += [f"- {note}" for note in notes] + [""]
    return lines


def _floor(results: dict) -> list[str]:
    if "floor_details" not in results:
        return []
    rows = []
    for world, by_n in results["floor_details"].items():
        for n, d in by_n.items():
            rows.append([world, int(n), d["forward_ms"], d["step_ms"], d["ratio"]])
    return _table(["world", "N", "bare forward, ms", "driver step, ms", "step ÷ forward"], rows)


def _scaling(results: dict) -> list[str]:
    if "scaling" not in results:
        return []
    rows = [
        [
            r["axis"],
            r["world"],
            r["num_particles"],
            r["steps"],
            r["step_ms"],
            1e3 * r["step_ms"] / r["num_particles"],
            r["peak_rss_mib"],
            r["sampling_rss_mib"],
            r["stored_trace_mib"],
            r["one_batch_of_images_mib"],
        ]
        for r in results["scaling"]["rows"]
    ]
    return _table(
        [
            "axis",
            "world",
            "N",
            "T",
            "ms / step",
            "µs / particle-step",
            "peak RSS, MiB",
            "RSS above baseline, MiB",
            "traces kept, MiB",
            "one batch of images, MiB",
        ],
        rows,
    )


def _optimisations(results: dict) -> list[str]:
    if "optimisations" not in results:
        return []
    lines = []
    for world, experiments in results["optimisations"].items():
        rows = []
        for name, values in experiments.items():
            if "error" in values:
                rows.append([name, "error", values["error"]])
                continue
            if name == "chunk":
                for n, v in values.items():
                    sizes = ", ".join(f"{k[6:-3]} rows {_num(x)} ms" for k, x in v.items() if k.startswith("chunk_"))
                    rows.append(
                        [
                            f"chunk (N={n})",
                            f"{_num(v['whole_ms'])} ms in one batch; {sizes}",
                            f"default ({v['default_chunk']} rows) speed-up {_num(v['speedup_default'])}x; "
                            f"max difference {_num(v['max_abs_difference'])}",
                        ]
                    )
                continue
            if name == "trace":
                for n, v in values.items():
                    rows.append(
                        [
                            f"trace (N={n})",
                            f"{_num(v['trace_ms'])} ms traced vs {_num(v['lean_ms'])} ms direct "
                            f"vs {_num(v['forward_ms'])} ms bare forward",
                            f"traced ÷ direct {_num(v['trace_over_lean'])}; traced ÷ forward "
                            f"{_num(v['trace_over_forward'])}, direct ÷ forward {_num(v['lean_over_forward'])}; "
                            f"bitwise equal: {_num(v['bitwise_equal'])}",
                        ]
                    )
                continue
            summary = {
                "grad_mode": lambda v: (
                    f"{_num(v['no_grad_ms'])} ms no_grad vs {_num(v['inference_mode_ms'])} ms inference_mode",
                    f"speed-up {_num(v['speedup'])}x",
                ),
                "layout": lambda v: (
                    ", ".join(f"{k[:-3]} {_num(x)} ms" for k, x in v.items() if k.endswith("_ms")),
                    ", ".join(f"{k} {_num(x)}" for k, x in v.items() if not k.endswith("_ms")),
                ),
                "threads": lambda v: (
                    f"{_num(v['one_thread_ms'])} ms 1 thread vs {_num(v['two_threads_ms'])} ms 2 threads",
                    f"2 ÷ 1 = {_num(v['two_over_one'])} at load {v['load_average']}",
                ),
                "compile": lambda v: (
                    f"compile {_num(v['compile_s'])} s; {_num(v['eager_ms'])} ms eager vs "
                    f"{_num(v['compiled_ms'])} ms compiled",
                    f"speed-up {_num(v['speedup'])}x, break-even after {_num(v['break_even_steps'])} "
                    f"steps; wins in a {v['typical_steps']}-step run: {_num(v['wins_in_typical_run'])}",
                ),
                "bfloat16": lambda v: (
                    f"{_num(v['float32_ms'])} ms float32 vs {_num(v['bfloat16_ms'])} ms bfloat16",
                    f"speed-up {_num(v['speedup'])}x; Delta {_num(v['delta_float32'], 4)} -> "
                    f"{_num(v['delta_bfloat16'], 4)}; predictions move {_num(v['mean_abs_prediction_change'])} "
                    f"on average, {_num(v['max_abs_prediction_change'])} at most",
                ),
                "render": lambda v: (
                    ", ".join(f"{k[:-3]} {_num(x)} ms" for k, x in v.items() if k.endswith("_ms")),
                    f"render is {_num(100 * v['render_share_of_forward'])}% of the forward pass; "
                    f"chunk in use {v['current_chunk']}",
                ),
            }[name](values)
            rows.append([name, *summary])
        lines += [f"#### {world}", ""] + _table(["experiment", "side by side", "result"], rows)
    return lines


def _masses(values) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def _ess_rate(row: dict) -> str:
    return _num(row["ess_per_s"]) if row["converged"] else "not converged"


def _tau(row: dict) -> str:
    """The population mean's autocorrelation time in draws (population kernels; "–" for rwmh)."""
    return _num(row["tau_population_max"], 1) if row.get("tau_population_max") is not None else "–"


def _speedup(rows: list[dict], label: str = "ensemble") -> str:
    """``label``'s ESS/s over rwmh ESS/s, where both converged; otherwise say which did not."""
    by = {row["kernel"]: row for row in rows}
    ours, theirs = by.get(label), by.get("rwmh")
    if not ours or not theirs:
        return "–"
    if ours["converged"] and theirs["converged"]:
        return _num(ours["ess_per_s"] / theirs["ess_per_s"]) + "x"
    if ours["converged"]:
        return "rwmh not converged"
    return f"{label} not converged"


def _population(results: dict) -> list[str]:
    sizes = results["sizes"]
    population_rows = any("tau_population_max" in row for row in results["exact"])
    lines = [
        f"Command: `{results['command']}` ({results['elapsed_s'] / 60:.1f} minutes, {results['started']}, "
        f"{results['torch_threads']} torch threads). Every kernel with N = {sizes['num_particles']:,}, "
        f"{sizes['warmup']} warm-up + {sizes['steps']} steps, seed 0, one after the other in one process. "
        "`ensemble, K rungs` is replica exchange (`rungs=K`) with the same N particles in all, N / K per "
        "temperature, so every row scores N particles per step; its R-hat and ESS are over the N / K "
        "particles at beta = 1"
        + (
            '; `SMC start` starts its chains at one tempered SMC run\'s particles (`start="smc"`, its seconds '
            "included) instead of prior draws. "
            if any("SMC start" in row["kernel"] for row in results["exact"])
            else ". "
        )
        + f"ESS/s counts only where R-hat <= {results['rhat_ok']}"
        + (
            " and, for the population kernels, the recorded draws span at least 20 autocorrelation times (tau) of "
            "the population's mean"
            if population_rows
            else ""
        )
        + ' (otherwise "not converged").'
        + (
            " A population kernel's particles are not independent chains, so its ESS is the smaller of the "
            "per-particle bulk ESS and the population mean's (the README's \"Reading the diagnostics\")."
            if population_rows
            else ""
        )
        + " Masses are fractions of all recorded draws (particles x steps)."
        + (
            f" Each exact-world run was repeated {sizes['timings']} times, the kernels interleaved, and is "
            "timed by the median."
            if sizes.get("timings", 1) > 1
            else ""
        )
        + (
            " Freed memory was kept for reuse, as the command line does (`pls.keep_freed_memory()`)."
            if results.get("keep_freed_memory")
            else ""
        ),
        "",
        "**Worlds with exact answers** (tests/exact_worlds.py):",
        "",
    ]
    rows = []
    for row in results["exact"]:
        rows.append(
            [
                row["target"],
                row["kernel"],
                _num(row["rhat_max"], 4),
                _tau(row),
                _ess_rate(row),
                _masses(row["masses"]),
                _masses(row["exact"]),
                _num(row["max_mass_error"], 2),
                _num(1e3 * row["s_per_step"]) + " ms",
            ]
        )
    lines += _table(
        ["target", "kernel", "R-hat max", "tau", "ESS/s", "piece masses", "exact", "max error", "per step"], rows
    )
    targets = {}
    for row in results["exact"] + results["real"]:
        targets.setdefault((row["target"], row.get("alpha")), []).append(row)
    lines += [
        "**Shipped worlds**: mean prediction over all recorded draws against tempered SMC with "
        f"{sizes['smc_factor']}x the particles"
        + (
            " and " + ", ".join(f"{m} MH moves per temperature at alpha {_num(a)}" for a, m in moves.items())
            if (moves := {r["alpha"]: r["smc_moves"] for r in results["real"] if "smc_moves" in r})
            else ""
        )
        + (
            ", pooled over "
            + ", ".join(f"{s} seeds at alpha {_num(a)}" for a, s in seeds.items())
            + ", its error there the larger of the runs' own and the one their spread implies"
            if (seeds := {r["alpha"]: r["smc_seeds"] for r in results["real"] if r.get("smc_seeds", 1) > 1})
            else ""
        )
        + (
            " (z: the difference in Monte Carlo standard errors, SMC's from its ESS over its independent "
            "populations, a population kernel's from its population's mean; largest over classes)."
            if any("tau_population_max" in row for row in results["real"])
            else " (z: the difference in Monte Carlo standard errors, from each side's ESS; largest over classes)."
        ),
        "",
    ]
    rows = []
    for row in results["real"]:
        top = [row["classes"].index(name) for name in row["top_classes"]]
        mean = ", ".join(f"{row['classes'][i]} {row['mean_prediction'][i]:.3f}" for i in top)
        smc = ", ".join(f"{row['smc_mean_prediction'][i]:.3f}" for i in top)
        rows.append(
            [
                row["target"],
                _num(row["alpha"]),
                row["kernel"],
                _num(row["rhat_max"], 4),
                _tau(row),
                _ess_rate(row),
                mean,
                smc,
                _num(row["max_abs_z_vs_smc"], 2),
                _num(1e3 * row["s_per_step"]) + " ms",
            ]
        )
    lines += _table(
        [
            "target",
            "alpha",
            "kernel",
            "R-hat max",
            "tau",
            "ESS/s",
            "mean prediction (top 2)",
            "SMC",
            "|z| vs SMC",
            "per step",
        ],
        rows,
    )
    labels = [label for label in dict.fromkeys(row["kernel"] for row in results["exact"]) if label != "rwmh"]
    lines += [
        "**ESS per second over rwmh** (the goal: >= 10x on multi-piece targets, >= 0.8x on unimodal ones):",
        "",
    ]
    lines += _table(
        ["target", "alpha", *(f"{label} / rwmh" for label in labels)],
        [
            [target, _num(alpha) if alpha else "–", *(_speedup(rows_, label) for label in labels)]
            for (target, alpha), rows_ in targets.items()
        ],
    )
    if results.get("floor"):
        lines += [
            "**The floor** (one driver step, trace collection included, over one bare batched decode + "
            "classify of the same N):",
            "",
        ]
        lines += _table(
            ["world", "kernel", "N", "forward", "step", "step / forward"],
            [
                [
                    r["world"],
                    r["kernel"],
                    r["num_particles"],
                    _num(r["forward_ms"]) + " ms",
                    _num(r["step_ms"]) + " ms",
                    _num(r["ratio"]),
                ]
                for r in results["floor"]
            ],
        )
    reading = HERE / "population.md"  # what the numbers mean for the goals, and what was tried
    if reading.is_file():
        lines += [reading.read_text().strip(), ""]
    return lines


def render(runs: list[dict]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/run.py` (`make bench` runs the quick suite; `python benchmarks/run.py --full` "
        "the long one; `benchmarks/gpu.sh` the same on a GPU). Every comparison runs its contenders in one "
        "process, on the same world, target, alpha and torch thread count, interleaved or one after the other "
        "within minutes; the ratios are the result, absolute times are context (the machine is shared).",
        "",
    ]
    notes = HERE / "notes.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    for results in runs:
        if "exact" in results:  # benchmarks/population.py
            lines += [f"## Population MCMC against independent chains: {results.get('_file', '')}", ""]
            lines += _population(results)
            continue
        if "mode" not in results:  # a script that renders its own section (the .md files below)
            continue
        title = {"quick": "Quick run (`make bench`)", "full": "Full run (`--full`)", "tiny": "Smoke run"}.get(
            results.get("mode"), results.get("mode")
        )
        lines += [f"## {title}: {results.get('_file', '')}", ""]
        lines += _machine(results)
        if results.get("goals"):
            lines += ["### Goals", ""] + _goals(results)
        comparison = _comparison(results)
        if comparison:
            lines += ["### Effective samples and hits per second at equal wall-clock budgets", ""] + comparison
        if results.get("floor_details"):
            lines += ["### The floor: driver step ÷ bare batched forward pass", ""] + _floor(results)
        if results.get("scaling"):
            lines += ["### Scaling with N and T (one subprocess per row)", ""] + _scaling(results)
        if results.get("optimisations"):
            lines += ["### Speed-ups tried (before/after side by side)", ""] + _optimisations(results)
    # measurements written by their own scripts, each with its command and reading
    for name in ("sweep.md", "pyro_models.md", "pyro_models_reading.md", "bayestrex.md"):
        section = HERE / name
        if section.is_file():
            lines += [section.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"
