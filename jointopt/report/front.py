"""The Pareto summary that ``jointopt pareto`` prints: front, hypervolume, knee, reductions."""

from __future__ import annotations

from typing import Any

from jointopt.controllers.objective import objectives_of, study_records
from jointopt.errors import UserError
from jointopt.pareto import front_table, hypervolume, knee_point, pareto_front, reductions
from jointopt.report.counts import TrialCounts
from jointopt.study import Study

__all__ = ["pareto_summary", "format_summary"]


def pareto_summary(study: Study) -> dict[str, Any]:
    records, base, ostudy = study_records(study)
    if base is None:
        raise UserError(f"{study.path}: study {study.search.study_name!r} has no evaluated "
                        "baseline (space.max_config) yet; run jointopt search first")
    objectives = objectives_of(study)
    front = pareto_front(records, objectives)
    knee = knee_point(front, objectives, base)
    return {
        "study": study.search.study_name,
        "objectives": [{"key": o.key, "direction": o.direction} for o in objectives],
        "trials": len(records),  # complete trials listed: a repeat of a config only once
        "storage": TrialCounts.from_trials(ostudy.get_trials(deepcopy=False)),
        "feasible": sum(1 for r in records if r["feasible"]),
        "baseline": base,
        "hypervolume": hypervolume(records, objectives, base),
        "knee": None if knee is None else {**knee, "reductions": reductions(knee, base)},
        "front": [{**r, "reductions": reductions(r, base)} for r in front],
        "table": front_table(front, objectives, base),
    }


def format_summary(s: dict[str, Any]) -> str:
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.float_format", "{:.4g}".format):
        table = s["table"].to_string(index=False)
    b = s["baseline"]["metrics"]
    lines = [
        f"study {s['study']}: {s['storage'].sentence()}",
        f"{s['trials']} trials listed (each config once, invalid ones included), "
        f"{s['feasible']} feasible, "
        f"front of {len(s['front'])}",
        f"baseline (trial {s['baseline']['number']}, max config fp32 r=0): "
        f"accuracy={b['accuracy']:.4f} latency={b['latency_ms']:.3f} ms "
        f"throughput={b['throughput_ips']:.0f} img/s energy={b['energy_mj']:.4g} mJ "
        f"({b['energy_source']})",
        f"normalised hypervolume: {s['hypervolume']:.4f}",
        "", table, "",
    ]
    if s["knee"] is not None:
        k = s["knee"]
        red = " ".join(f"{key}={v:.1f}" for key, v in k["reductions"].items())
        lines.append(f"knee point: trial {k['number']} accuracy="
                     f"{k['metrics']['accuracy']:.4f} reductions vs baseline: {red}")
    return "\n".join(lines)
