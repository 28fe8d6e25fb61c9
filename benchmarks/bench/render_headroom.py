"""RESULTS.md section 2: what the pooled target would ask of any search, from the records.

The hypervolume (jointopt.pareto) of a front is at most that of one point with the front's best
accuracy at its smallest cost ratios: the box of that "ideal corner" holds every point the front
dominates. So with the smallest cost ratios any search of a cell measured, a search whose front
has accuracy ``a`` at best reaches ``a * prod(1 - cost ratio)``; for the cell's seed-paired
ratio to reach a target ``t`` against the best other search's ``h``, it needs a config of
accuracy ``t * h / prod(1 - cost ratio)`` (more if its costs are not the smallest). Shown next to
the best validation accuracy any config of the cell reached. The cost floor is the smallest
measured, not a proof about configs nobody measured; the accuracy bound holds for any front.
"""

from __future__ import annotations

import math
from typing import Any

from bench.render import f
from bench.stats import best_other_hv, joint_vs_best_other


def _floor(cell: dict[str, Any]) -> float:
    """prod(1 - smallest cost ratio seen) of a cell's ceiling record."""
    ratios = cell["ceiling"]["best_ratios"][1:]  # [error, cost ratios...]
    return math.prod(1.0 - r for r in ratios)


def target_needs(cells: list[dict[str, Any]], pairs: list[dict[str, Any]],
                 others: tuple[str, ...], target: float = 1.05) -> list[str]:
    """Per cell and pooled: what joint's hypervolume could be at most, and what accuracy a
    config at the cost floor would need for the ratio ``target``. ``pairs`` are section 2's
    (one per cell and budget, ``{"name", "hv": {search: {seed: hv}}}``)."""
    by_name = {f"{c['dataset']}/{c['objectives']}": c for c in cells if c.get("ceiling")}
    rows, corner_pairs, perfect_pairs = [], [], []
    capped: list[float] = []  # floor / best other of each pair: cells that cannot reach target
    free: list[float] = []
    for p in pairs:
        cell = by_name.get(p["name"].rsplit("/", 1)[0])
        if cell is None or "joint" not in p["hv"]:
            continue
        floor = _floor(cell)
        best_acc = 1.0 - cell["ceiling"]["best_ratios"][0]
        seeds = [s for s in sorted(p["hv"]["joint"]) if best_other_hv(p["hv"], s, others) > 0]
        best_other = [best_other_hv(p["hv"], s, others) for s in seeds]
        if not seeds:
            continue
        need = target * sum(best_other) / len(best_other) / floor
        rows.append(f"| {p['name']} | {f(floor, '.3f')} | {f(best_acc, '.3f')} | "
                    f"{f(best_acc * floor / _mean(best_other), '.3f')} | "
                    f"{f(floor / _mean(best_other), '.3f')} | "
                    f"{f(need, '.3f')}{' (impossible)' if need > 1 else ''} |")
        corner_pairs.append({"name": p["name"], "hv": {
            **p["hv"], "joint": {s: best_acc * floor for s in seeds}}})
        perfect_pairs.append({"name": p["name"], "hv": {
            **p["hv"], "joint": {s: floor for s in seeds}}})
        (capped if need > 1 else free).extend(floor / b for b in best_other)
    if not rows:
        return []
    corner = joint_vs_best_other(corner_pairs, others=others)
    perfect = joint_vs_best_other(perfect_pairs, others=others)
    n = len(capped) + len(free)
    uniform = (target * n - sum(capped)) / sum(free) if free else math.nan
    where = (f"with the {len(capped)} pairs of the cells marked impossible at 100% accuracy, "
             f"one config of validation accuracy {f(uniform, '.3f')} at the cost floor in each "
             "of the other cells" if capped else
             f"one config of validation accuracy {f(uniform, '.3f')} at the cost floor in "
             "every cell")
    return [
        "What the pooled target asks of any search (benchmarks/bench/render_headroom.py): a "
        "front's hypervolume is at most its best accuracy times prod(1 - cost ratio) at its "
        "smallest cost ratios. With the smallest cost ratios any search of the cell measured "
        "(the cost floor):", "",
        "| cell | prod(1 - cost floor) | best val accuracy any config reached | ratio at most, "
        "with that accuracy | ratio at most, at 100% accuracy | accuracy a config at the cost "
        f"floor needs for {target:.2f} |", "|---|---|---|---|---|---|", *rows, "",
        f"Pooled over the {corner['n_pairs']} pairs, a joint search that found, in every cell "
        f"and seed, a config with the cell's best accuracy at the cost floor would score "
        f"{f(corner['pooled_mean'], '.3f')}; one at 100% accuracy, "
        f"{f(perfect['pooled_mean'], '.3f')}. A pooled {target:.2f} needs, {where}: compare "
        "the best accuracies above, and max_config's in each cell's baseline line.", ""]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
