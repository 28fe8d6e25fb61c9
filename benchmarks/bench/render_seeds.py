"""RESULTS.md section 5: is the standalone ranking itself repeatable? (bench_fidelity_seeds.jsonl)

benchmarks/fidelity_seeds.py trains some fidelity configs standalone again with another seed.
Two standalone runs of the same configs are the best ranking any supernet could be compared
with, so their agreement bounds what section 5's Kendall tau can show on these configs:

* the seed-to-seed standard deviation of one config's test accuracy, ``sigma = rms(d) / sqrt 2``
  over the configs' seed differences ``d``;
* the share of the spread between configs that is not seed noise, ``rel = 1 - sigma^2 / s^2``
  (``s``: the standard deviation of the fp32 configs' standalone test accuracy in section 5);
* for normally distributed scores, Kendall's tau between two measurements that correlate by
  ``rel`` is ``(2 / pi) * arcsin(rel)`` (Greiner's relation): about the tau that two standalone
  seeds, or a perfect supernet against one seed, would be expected to reach.
"""

from __future__ import annotations

import math
from typing import Any

from bench.render import f


def fidelity_seeds(recs: list[dict[str, Any]], fid_recs: list[dict[str, Any]]) -> list[str]:
    """The replicate table and the noise ceiling, for the datasets the records hold."""
    if not recs:
        return []
    out: list[str] = []
    for study in sorted({r["study"] for r in recs}):
        rows = {(r["job"], r["seed"]): r for r in recs if r["study"] == study}  # latest wins
        out += _study(study, list(rows.values()), fid_recs)
    return out


def _study(study: str, rows: list[dict[str, Any]], fid_recs: list[dict[str, Any]]
           ) -> list[str]:
    from scipy.stats import kendalltau

    rows = sorted(rows, key=lambda r: r["job"])
    a = [r["seed0"]["test_accuracy"] for r in rows]
    b = [r["replicate"]["test_accuracy"] for r in rows]
    d = [y - x for x, y in zip(a, b, strict=True)]
    sigma = math.sqrt(sum(x * x for x in d) / len(d) / 2)
    seeds = sorted({r["seed"] for r in rows})
    out = [f"### Standalone seed replicates ({study})", "",
           f"Command: `.venv/bin/python benchmarks/fidelity_seeds.py {study}` "
           f"(seed {', '.join(map(str, seeds))} against make bench-train's seed 0; same data, "
           f"recipe and {rows[0]['epochs']} epochs; commit {rows[-1]['commit']}, "
           f"{rows[-1]['machine']}).", "",
           "| job | config | seed-0 test | replicate test | difference | seconds |",
           "|---|---|---|---|---|---|"]
    for r, x, y in zip(rows, a, b, strict=True):
        key = _key(r["config"])
        out.append(f"| {r['job']} | `{key}` | {f(x)} | {f(y)} | {f((y - x) * 100, '+.2f')} "
                   f"pts | {f(r['seconds'], '.0f')} |")
    out += ["", f"Seed-to-seed standard deviation of one config's test accuracy: "
            f"{f(sigma * 100, '.2f')} pts ({len(rows)} configs)."]
    if len(rows) >= 3:
        tau, p = kendalltau(a, b)
        out[-1] += (f" Kendall tau between the two seeds' rankings of these configs: "
                    f"{f(tau, '.2f')} (p {f(p, '.3f')}).")
    spread = _fp32_spread(study, fid_recs)
    if spread is not None:
        s, n = spread
        rel = max(0.0, 1.0 - sigma ** 2 / s ** 2)
        ceiling = 2 / math.pi * math.asin(rel)
        out[-1] += (f" Section 5's {n} fp32 configs spread by {f(s * 100, '.2f')} pts (standard "
                    f"deviation of their seed-0 test accuracy), so {f(rel * 100, '.0f')}% of "
                    f"that spread is not seed noise, and the tau expected between two standalone "
                    f"seeds, or between a perfect supernet and one seed, is about "
                    f"{f(ceiling, '.2f')} (Greiner's relation, benchmarks/bench/render_seeds.py)"
                    f" against the 0.6 target.")
    return out + [""]


def _fp32_spread(study: str, fid_recs: list[dict[str, Any]]) -> tuple[float, int] | None:
    """(standard deviation, count) of the fp32 configs' standalone test accuracy in the latest
    section-5 record of the study's dataset."""
    ds = study.rsplit("/", 1)[-1].removesuffix(".yaml")
    recs = [r for r in fid_recs if r.get("dataset", "wm811k") == ds]
    if not recs:
        return None
    xs = [c["standalone_test"] for c in recs[-1]["configs"]
          if c.get("precision", "w32a32") == "w32a32"]
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)), len(xs)


def _key(cfg: dict[str, Any]) -> str:
    from jointopt.space import JointConfig

    return JointConfig.from_dict(cfg).key()
