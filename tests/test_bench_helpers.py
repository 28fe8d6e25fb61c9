"""Fast checks of the benchmark helpers: bootstrap intervals, ratios and target checks, the
generic cost counter against jointopt's own, and RESULTS.md tables rendered from a fake record."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from torch import nn

from jointopt import SearchSpace, ViTSupernet
from jointopt.cost.energy import modelled_energy_mj
from jointopt.cost.generic import count_activation_io, count_macs, module_costs
from jointopt.cost.registry import EvalContext
from jointopt.cost.size import size_costs
from jointopt.precision import RuntimeCaps, plan_for

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import render, render_checks, render_joint  # noqa: E402
from bench.stats import (  # noqa: E402
    Check,
    balanced_bootstrap_ci,
    bootstrap_ci,
    paired_balanced_diff,
    paired_bootstrap_diff,
    pick_member,
    ratios,
)

TINY_SPACE = {
    "supernet": {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2,
                 "head_dim": 8, "mlp_ratio": 2.0},
    "choices": {"depth": [1, 2], "embed_dim": [16, 32], "num_heads": [1, 2],
                "mlp_ratio": [1.0, 2.0], "tome_r": [0, 2], "w_bits": [32, 8],
                "a_bits": [32, 8]},
}


# ---- bootstrap ---------------------------------------------------------------------------
def test_bootstrap_ci_brackets_the_accuracy_and_narrows_with_more_images() -> None:
    small = np.array([1, 0] * 20)
    large = np.array([1, 0] * 2000)
    acc, lo, hi = bootstrap_ci(small, seed=1)
    assert acc == 0.5 and lo < 0.5 < hi
    _, lo2, hi2 = bootstrap_ci(large, seed=1)
    assert hi2 - lo2 < (hi - lo) / 4  # width ~ 1/sqrt(n): 100x the images, ~10x narrower
    assert 0.3 < lo < 0.5 and 0.5 < hi < 0.7  # +-1.96 * sqrt(.25/40) = +-0.155
    assert bootstrap_ci(small, seed=1) == (acc, lo, hi)  # seeded: reproducible


def test_bootstrap_ci_degenerate_cases() -> None:
    assert bootstrap_ci(np.ones(30)) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_balanced_accuracy_is_the_mean_class_recall_with_a_stratified_interval() -> None:
    # 90 images of class 0 all right, 10 of class 1 with 2 right: accuracy 0.92, but the
    # balanced accuracy is (1.0 + 0.2) / 2 = 0.6.
    labels = np.array([0] * 90 + [1] * 10)
    correct = np.array([1] * 90 + [1, 1] + [0] * 8)
    bacc, lo, hi = balanced_bootstrap_ci(correct, labels, seed=3)
    assert bacc == pytest.approx(0.6) and bootstrap_ci(correct)[0] == pytest.approx(0.92)
    assert lo < 0.6 < hi and hi <= 1.0 and lo >= 0.5  # class 0's recall never moves
    assert balanced_bootstrap_ci(correct, labels, seed=3) == (bacc, lo, hi)
    # Paired: a model that also gets class 1 right is 0.4 better, whatever the resample.
    better = np.ones(100)
    diff, dlo, dhi = paired_balanced_diff(better, correct, labels)
    assert diff == pytest.approx(0.4) and 0 < dlo <= 0.4 <= dhi
    assert paired_balanced_diff(correct, correct, labels) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one label per prediction"):
        balanced_bootstrap_ci(correct, labels[:50])


def test_paired_difference_is_zero_for_the_same_predictions_and_signed() -> None:
    a = np.array([1, 1, 0, 1] * 25)
    assert paired_bootstrap_diff(a, a) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_bootstrap_diff(np.ones(100), a)
    assert d == pytest.approx(0.25) and 0 < lo < d < hi
    with pytest.raises(ValueError):
        paired_bootstrap_diff(np.ones(3), np.ones(4))


# ---- ratios and verdicts -----------------------------------------------------------------
def test_ratios_point_the_same_way_for_every_metric() -> None:
    base = {"params": 1000, "macs": 2000, "bitops": 2000 * 1024, "model_bytes": 4000,
            "latency_ms": 2.0, "throughput_ips": 100.0, "energy_mj": 1.0}
    pick = {"params": 100, "macs": 400, "bitops": 400 * 64, "model_bytes": 100,
            "latency_ms": 0.5, "throughput_ips": 1200.0, "energy_mj": 0.05}
    q = ratios(pick, base)
    assert q["params"] == 10 and q["macs"] == 5 and q["bitops"] == 80
    assert q["latency"] == 4 and q["throughput"] == 12 and q["energy"] == 20
    assert ratios(base, pick)["throughput"] == pytest.approx(1 / 12)
    assert math.isnan(ratios({"params": 0}, base)["params"])


def test_check_says_met_or_by_how_much_it_is_missed() -> None:
    assert Check("t", 12.0, 10.0).verdict == "met"
    assert Check("t", 10.0, 10.0).verdict == "met"
    missed = Check("t", 4.0, 10.0)
    assert missed.verdict == "missed" and missed.short_by == pytest.approx(2.5)
    assert math.isnan(Check("t", 12.0, 10.0).short_by)
    assert Check("t", math.nan, 10.0).verdict == "not measured"
    assert Check("t", 3.0).verdict == "reported"  # no target
    # strict thresholds, plain differences and a verdict the record states
    assert Check("t", 1.0, 1.0, unit=".3f", strict=True).verdict == "missed"
    assert Check("t", 0.98, 1.05, unit=".3f").short_by == pytest.approx(0.07)
    assert Check("t", 0.5, 0.9, stated=True).verdict == "met"
    cells = render.check_cells(missed)
    assert cells == ["4.00x", ">= 10x", "missed", "2.5x"]


# ---- section 1's pick --------------------------------------------------------------------
def _member(trial: int, val: float, ips: float, test: float = 0.0) -> dict:
    return {"trial": trial, "val_accuracy": val, "throughput_ips": ips, "test_accuracy": test}


def test_pick_is_the_fastest_member_within_a_point_of_the_cnn_on_validation() -> None:
    front = [_member(1, 0.90, 1000.0), _member(2, 0.875, 5000.0), _member(3, 0.86, 9000.0),
             _member(4, 0.95, 500.0)]
    chosen, met = pick_member(front, 0.88)  # floor 0.87: trials 1, 2 and 4 qualify
    assert met and chosen["trial"] == 2
    # exactly one point below the CNN qualifies (0.88 - 0.01 is not exact in floats)
    chosen, met = pick_member([_member(5, 0.87, 100.0)], 0.88)
    assert met and chosen["trial"] == 5


def test_pick_never_reads_test_accuracy() -> None:
    front = [_member(1, 0.90, 1000.0, test=0.99), _member(2, 0.89, 5000.0, test=0.10)]
    assert pick_member(front, 0.88)[0]["trial"] == 2


def test_pick_falls_back_to_the_most_accurate_member_when_none_qualifies() -> None:
    front = [_member(1, 0.70, 1000.0), _member(2, 0.80, 200.0), _member(3, 0.75, 9000.0)]
    chosen, met = pick_member(front, 0.88)
    assert not met and chosen["trial"] == 2


def test_pick_ties_go_to_accuracy_then_speed_then_the_lower_trial() -> None:
    same_speed = [_member(3, 0.89, 800.0), _member(1, 0.90, 800.0), _member(2, 0.90, 800.0)]
    assert pick_member(same_speed, 0.88)[0]["trial"] == 1
    same_acc = [_member(1, 0.60, 100.0), _member(2, 0.60, 900.0), _member(3, 0.60, 900.0)]
    chosen, met = pick_member(same_acc, 0.88)
    assert not met and chosen["trial"] == 2
    # a member without a throughput figure is never the fastest
    nan_speed = [_member(1, 0.90, math.nan), _member(2, 0.90, 10.0)]
    assert pick_member(nan_speed, 0.88)[0]["trial"] == 2
    with pytest.raises(ValueError):
        pick_member([], 0.88)


# ---- generic counter vs jointopt's own ---------------------------------------------------
def test_generic_counter_matches_jointopt_on_a_tiny_fp32_subnet() -> None:
    space = SearchSpace.from_dict(copy.deepcopy(TINY_SPACE))
    torch.manual_seed(0)
    net = ViTSupernet(space.supernet, in_chans=3, num_classes=5, space=space).eval()
    for cfg in (space.max_config, space.min_config.__class__(
            depth=1, embed_dim=16, num_heads=1, mlp_ratio=1.0, tome_r=0)):
        sub = net.extract(cfg).eval()
        plan = plan_for(32, 32, depth=cfg.depth, merges=cfg.merges,
                        caps=RuntimeCaps("openvino", half="bf16"))
        costs = size_costs(cfg, net.shape, plan, in_chans=3, num_classes=5)
        ectx = EvalContext(cfg=cfg, shape=net.shape, in_chans=3, num_classes=5, io_bits=8,
                           batch_size=16, metrics=dict(costs), plan=plan)
        g = module_costs(sub, 3, 16, batch_size=16)
        assert g["params"] == costs["params"]
        assert g["macs"] == costs["macs"]
        assert g["bitops"] == costs["bitops"]
        assert g["model_bytes"] == costs["model_bytes"]
        # the same matmuls, norms, softmax and GELU, charged the same way
        assert g["energy_mj"] == pytest.approx(modelled_energy_mj(ectx), rel=1e-9)
        assert g["energy_b1_mj"] == pytest.approx(modelled_energy_mj(ectx, 1), rel=1e-9)


def test_generic_counter_on_a_plain_mlp_and_fused_attention() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    assert count_macs(mlp, (1, 3, 2, 2)) == 12 * 7 + 7 * 3
    # activations in and out of each product; weights and biases excluded
    assert count_activation_io(mlp, (1, 3, 2, 2)) == (12 + 7) + (7 + 3)

    class Attn(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [1, h=2, n=5, d=4]
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    h, n, d = 2, 5, 4
    io = count_activation_io(Attn(), (1, h, n, d))
    # q.k^T (q, k in; logits out), softmax (logits in and out), softmax.v (probabilities and v
    # in, output out): as jointopt.cost.size counts its own attention
    assert io == 3 * h * n * d + 4 * h * n * n + h * n * d


# ---- rendering from a fake record --------------------------------------------------------
def _fake_headline(throughput_x: float) -> dict:
    m = {"params": 1e5, "macs": 1e7, "bitops": 1e9, "model_bytes": 1e5, "latency_ms": 0.3,
         "throughput_ips": 5000.0, "energy_model_mj": 0.01, "latency_runtime": "ort",
         "val_accuracy": 0.9, "test_accuracy": 0.9, "test_ci": [0.85, 0.95]}
    ratio = {"params": 20.0, "macs": 30.0, "bitops": 400.0, "model_bytes": 80.0,
             "latency": 5.0, "throughput": throughput_x, "energy": 50.0}
    return {"dataset": "wm811k", "mode": "quick", "date": "2026-01-01", "commit": "abc",
            "run_id": "x", "models": {k: dict(m, epochs=20) for k in
                                      ("pick", "deit_tiny", "resnet10t", "supernet_max")},
            "ratios": {k: dict(ratio) for k in ("deit_tiny", "resnet10t", "supernet_max")},
            "pick": {"trial": 7, "rule_met": True, "pick_by_val_trial": 7},
            "budget_matched": False, "baseline_epochs": 5, "supernet_epochs": 46,
            "test_images": 134, "acc_diff_vs_deit": [0.0, -0.05, 0.05],
            "energy_check": {"macs": {"rel_diff": 0.0}, "energy_mj": {"rel_diff": 0.001}}}


def _checks(r: dict) -> dict[str, Check]:
    return {c.claim: c for c in render.headline_checks(r)}


def test_headline_checks_and_facts_are_computed_from_the_numbers() -> None:
    r = _fake_headline(4.0)
    c = _checks(r)
    tp = c["throughput vs DeiT-Tiny shape"]
    assert (tp.value, tp.target, tp.verdict) == (4.0, 10.0, "missed")
    assert tp.short_by == pytest.approx(2.5)
    assert [(c[f"{k} vs DeiT-Tiny shape"].value, c[f"{k} vs DeiT-Tiny shape"].verdict)
            for k in ("params", "macs", "energy")] == [(20.0, "met"), (30.0, "met"),
                                                       (50.0, "met")]
    facts = render.headline_facts(r)
    assert facts["budget_matched"] is False  # the budget weakness: 5 epochs vs the supernet's 46
    assert (r["baseline_epochs"], r["supernet_epochs"]) == (5, 46)
    assert facts["deit_ci_width"] == pytest.approx(0.10)  # CI width 0.85..0.95
    assert facts["trial_by_val"] == 7 and facts["test_images"] == 134
    assert facts["acc_diff_vs_deit"] == (0.0, -0.05, 0.05)
    assert facts["energy_check"] == pytest.approx(0.001)
    c = _checks(_fake_headline(12.0))
    assert all(x.verdict == "met" for x in c.values())
    assert c["throughput vs DeiT-Tiny shape"].value == 12.0


def test_summary_follows_the_record() -> None:
    rows = "\n".join(render.summary({"headline": [_fake_headline(4.0)]}))
    assert "| claim | dataset | measured | threshold | verdict | short by | run |" in rows
    assert "| throughput vs DeiT-Tiny shape | wm811k | 4.00x | >= 10x | missed | 2.5x |" in rows
    assert "| energy vs DeiT-Tiny shape | wm811k | 50.0x | >= 10x | met |  |" in rows
    kept = _checks(_fake_headline(4.0))["accuracy kept (pick test acc vs DeiT-Tiny's - 1 pt)"]
    assert (kept.value, kept.vs, kept.verdict) == (0.9, 0.9, "met")
    assert kept.target == pytest.approx(0.89)


def test_samplers_rank_best_first_with_ties_in_record_order() -> None:
    def hist(final: float) -> list[float]:
        return [final * min(1.0, (i + 1) / 10) for i in range(20)]

    r = {"trials": 20, "samplers": {n: {"final_hv": v, "hv_history": hist(v),
                                        "startup_trials": 0 if n == "b" else 10}
                                    for n, v in (("a", 0.2), ("b", 0.3), ("c", 0.2))}}
    rows = render_checks.sampler_rows(r)
    assert [x["sampler"] for x in rows] == ["b", "a", "c"]
    assert [x["final_hv"] for x in rows] == [0.3, 0.2, 0.2]
    assert rows[0]["trial_90"] == 9 and (rows[0]["startup"], rows[0]["guided"]) == (0, 20)
    assert (rows[1]["startup"], rows[1]["guided"]) == (10, 10)


def _fake_new_rule(vs_cnn: float, acc_diff: float) -> dict:
    from bench.stats import cnn_targets

    r = _fake_headline(12.0)
    r["pick"].update(rule_id="val-vs-resnet10t", rule_met=False, reference_val_accuracy=0.888,
                     threshold=0.878, front_size=2,
                     front=[{"trial": 7, "val_accuracy": 0.80}, {"trial": 8,
                                                                 "val_accuracy": 0.70}])
    r["models"]["resnet10t_int8"] = dict(r["models"]["resnet10t"], latency_runtime="ov-int8",
                                         int8_layers=12, compute_layers=13,
                                         energy_model_mj=None, latency_contended=0.5)
    r["ratios"]["resnet10t"]["throughput"] = vs_cnn
    r["ratios"]["resnet10t_int8"] = dict(r["ratios"]["resnet10t"], throughput=vs_cnn / 2)
    r["cnn_targets"] = cnn_targets(acc_diff=acc_diff, throughput_vs_cnn=vs_cnn,
                                   throughput_vs_deit=12.0)
    r.update(runtime="openvino", batch_size=64, acc_diff_vs_resnet10t=[acc_diff, -0.2, 0.0],
             balanced_diff_vs_resnet10t=[acc_diff - 0.05, -0.3, 0.01])
    r["models"]["pick"].update(test_balanced_accuracy=0.612, test_balanced_ci=[0.5, 0.7])
    return r


def test_cnn_targets_say_met_or_by_how_much_they_are_missed() -> None:
    r = _fake_new_rule(0.78, -0.105)
    facts = render.headline_facts(r)
    # no Pareto member's validation accuracy reached resnet10t's (0.888) minus 1 point
    assert facts["rule_met"] is False and facts["reference_val_accuracy"] == 0.888
    # the best of the 2 members: 0.800, 7.8 points short
    assert facts["front_size"] == 2 and facts["best_front_val"] == 0.80
    assert facts["front_short"] == pytest.approx(0.078)
    assert facts["acc_diff_vs_resnet10t"] == (-0.105, -0.2, 0.0)
    assert facts["balanced_diff_vs_resnet10t"] == pytest.approx((-0.155, -0.3, 0.01))
    assert "| 0.612 [0.500, 0.700] |" in "\n".join(render.model_table(r))
    assert facts["int8_layers"] == (12, 13)
    assert "trial_by_val" not in facts  # the new rule never chooses on test accuracy
    c = _checks(r)
    acc = c["test accuracy within 1 point of resnet10t"]
    assert (acc.value, acc.verdict) == (-0.105, "missed")
    assert acc.short_by == pytest.approx(0.095)
    assert render.check_cells(acc) == ["-10.5 pts", ">= -1 pts", "missed", "9.5 pts"]
    cnn = c[">= 5x resnet10t fp32 throughput"]
    assert (cnn.value, cnn.verdict) == (0.78, "missed")
    assert cnn.short_by == pytest.approx(5 / 0.78)  # 6.4x short
    deit = c[">= 10x DeiT-Tiny-shaped throughput"]
    assert (deit.value, deit.target, deit.verdict) == (12.0, 10.0, "met")
    i8 = c["throughput vs resnet10t int8 (no target)"]
    assert (i8.value, i8.verdict) == (0.39, "reported")
    rows = "\n".join(render.summary({"headline": [r]}))
    assert "| >= 5x resnet10t fp32 throughput | wm811k | 0.78x | >= 5x | missed | 6.4x |" in rows
    assert "| throughput vs resnet10t int8 (no target) | wm811k | 0.39x |  | reported |" in rows
    ok = _fake_new_rule(6.0, -0.005)
    assert all(t["met"] for t in ok["cnn_targets"])
    acc = _checks(ok)["test accuracy within 1 point of resnet10t"]
    assert (acc.value, acc.target, acc.verdict) == (-0.005, -0.01, "met")


def test_results_describe_the_newest_pick_rule_over_an_older_full_run(tmp_path: Path) -> None:
    old = dict(_fake_headline(4.0), mode="full", commit="old")
    new = dict(_fake_new_rule(0.78, -0.1), commit="new")
    for r in (old, new):
        r["pick"].update(study="s", storage="sqlite:///x.db")
        r["models"]["pick"]["config"] = {"depth": 2}
    assert render.headline_record([old, new], "wm811k")["commit"] == "new"
    assert render.headline_record([old], "wm811k")["commit"] == "old"
    assert "5x resnet10t" in "\n".join(render.summary({"headline": [old, new]}))
    pytest.importorskip("matplotlib")  # the section draws its figure (the bench extra)
    lines = "\n".join(render.headline([old, new], tmp_path))
    assert "resnet10t int8 (CNN)" in lines and "| test-vs-deit |" in lines
    assert "ov-int8 (timed on busy cores: 50% foreign load)" in lines


def test_joint_vs_best_other_pairs_seeds_and_reuses_the_single_grid() -> None:
    from bench.stats import joint_vs_best_other

    cells = [{"name": "a", "hv": {"joint": {0: 0.6, 1: 0.5}, "arch": {0: 0.5, 1: 0.55},
                                  "bits": {None: 0.4}}},
             {"name": "b", "hv": {"joint": {0: 0.3}, "arch": {0: 0.2}, "tokens": {0: 0.25}}}]
    out = joint_vs_best_other(cells)
    assert out["cells"]["a"]["ratios"] == pytest.approx([0.6 / 0.5, 0.5 / 0.55])
    assert out["cells"]["b"]["ratios"] == pytest.approx([0.3 / 0.25])
    assert out["n_pairs"] == 3
    assert out["pooled_mean"] == pytest.approx(np.mean([1.2, 0.5 / 0.55, 1.2]))
    assert out["min_cell_mean"] == pytest.approx(np.mean([1.2, 0.5 / 0.55]))
    assert out["pooled_lower"] <= out["pooled_mean"]


def _joint_record() -> dict:
    def run(seed: int, hv: float, long: bool = False) -> dict:
        hist = [hv * min(1.0, (i + 1) / 40) for i in range(120 if long else 40)]
        r = {"seed": seed, "hv_history": hist, "hv_40": hist[39], "seconds": 100.0,
             "kept_accuracy_cut": {"latency_ms": 3.0 + seed, "energy_mj": 20.0}}
        if long:
            r.update(hv_60=hist[59], hv_120=hist[119])
        return r

    searches = {name: {"runs": [run(s, hv, s < 1) for s in range(2)]}
                for name, hv in (("joint", 0.6), ("arch", 0.5), ("tokens", 0.1),
                                 ("staged", 0.55), ("joint-nsga2", 0.45))}
    searches["bits"] = {"runs": [{"seed": 0, "hv_history": [0.2] * 5, "seconds": 9.0,
                                  "exhausted": True,
                                  "kept_accuracy_cut": {"latency_ms": 2.0}}]}
    return {"dataset": "wm811k", "objectives": "latency", "mode": "full", "run_id": "r1",
            "commit": "abc", "date": "d", "trials": 40, "long_trials": 120, "long_seeds": 1,
            "baseline": {"accuracy": 0.9, "latency_ms": 1.0, "throughput_ips": 1000.0,
                         "energy_mj": 0.5, "latency_runtime": "openvino-f32"},
            "searches": searches}


def test_section_2_tables_come_from_the_numbers() -> None:
    from bench.stats import joint_vs_best_other

    lines = render_joint.joint([_joint_record()])
    text = "\n".join(lines)
    assert "| joint (axiswise) | 0.6000 ± 0.0000 (2) | 0.6000 ± 0.0000 (1) |" in text
    assert "| bits only (grid) | 0.2000 ± 0.0000 (1) | 0.2000 ± 0.0000 (1) | 0.2000" in text
    # joint 0.6 vs the best other (staged 0.55) in both seeds at 40, one seed at 120
    assert "| wm811k/latency/40 | 1.091, 1.091 | 1.091 |" in text
    assert "| pooled seed-paired ratio (3 pairs) | 1.091 | >= 1.050 | met |  |" in text
    r = _joint_record()
    hv = {name: {run["seed"]: render_joint._hv_at(run, n) for run in s["runs"]}
          for n in (40,) for name, s in r["searches"].items()}
    checks = render_joint.joint_checks([r], joint_vs_best_other(
        [{"name": "a", "hv": hv}], others=render_joint.OTHERS))
    pooled, _, _, at60 = checks
    assert pooled.value == pytest.approx(0.6 / 0.55) and pooled.verdict == "met"
    assert pooled.claim == "pooled seed-paired ratio (2 pairs)"
    assert (at60.value, at60.target, at60.verdict) == (pytest.approx(0.6),
                                                       pytest.approx(0.55), "met")


def test_section_2_shows_the_newest_run_and_older_cells_it_lacks() -> None:
    old_pcb = {**_joint_record(), "dataset": "deeppcb", "objectives": "throughput",
               "run_id": "r0", "commit": "old"}
    old_wm = {**_joint_record(), "run_id": "r0", "commit": "old"}
    quick = {**_joint_record(), "mode": "quick", "run_id": "q9", "commit": "q"}
    new_wm = {**_joint_record(), "run_id": "r1", "commit": "new"}
    cells = render_joint._latest_run([old_pcb, old_wm, new_wm, quick])
    assert [(c["dataset"], c["run_id"]) for c in cells] == [("wm811k", "r1"),
                                                            ("deeppcb", "r0")]
    text = "\n".join(render_joint.joint([old_pcb, old_wm, new_wm]))
    assert "### deeppcb, throughput objectives (full run r0, commit old)" in text
    assert "### wm811k, latency objectives (full run r1, commit new)" in text
    assert "commit old)" in text and text.count("### wm811k") == 1


def test_best_cut_at_kept_accuracy_ignores_inaccurate_and_infeasible_points() -> None:
    from bench.stats import best_at_kept_accuracy

    base = {"accuracy": 0.90, "latency_ms": 2.0, "energy_mj": 1.0}
    pts = [{"accuracy": 0.895, "latency_ms": 0.5, "energy_mj": 0.1, "feasible": True},
           {"accuracy": 0.80, "latency_ms": 0.1, "energy_mj": 0.001, "feasible": True},
           {"accuracy": 0.95, "latency_ms": 0.05, "energy_mj": 0.01, "feasible": False},
           {"accuracy": 0.91, "latency_ms": 1.0, "energy_mj": 0.02, "feasible": True}]
    cut = best_at_kept_accuracy(pts, base)
    assert cut == {"latency_ms": 4.0, "energy_mj": 50.0}
    assert all(math.isnan(v) for v in best_at_kept_accuracy(pts[1:3], base).values())




def test_ceiling_bounds_every_subset_of_the_pooled_configs() -> None:
    from bench.joint import ceiling

    from jointopt.pareto import Objective, hypervolume

    objectives = [Objective("accuracy", "maximize"), Objective("latency_ms", "minimize")]
    base = {"metrics": {"accuracy": 0.8, "latency_ms": 2.0}}

    def rec(acc: float, ms: float) -> dict:
        return {"config": {"a": acc, "m": ms}, "metrics": {"accuracy": acc, "latency_ms": ms},
                "feasible": True}

    union = [rec(0.85, 1.0), rec(0.80, 0.2), rec(0.9, 1.8), rec(0.95, 2.5)]  # last: outside
    c = ceiling(union, objectives, base)
    assert c["n_configs"] == 4
    assert c["union_hv"] == pytest.approx(hypervolume(union, objectives, base))
    for i in range(len(union)):
        assert hypervolume(union[:i] + union[i + 1:], objectives, base) <= c["union_hv"]
    # the corner pairs the best error (0.1) with the smallest latency ratio (0.1)
    assert c["best_ratios"] == pytest.approx([0.1, 0.1])
    assert c["corner_hv"] == pytest.approx(0.9 * 0.9)
    assert c["corner_hv"] >= c["union_hv"]


def test_target_needs_bounds_the_ratio_by_accuracy_at_the_cost_floor() -> None:
    """Section 2's headroom rows: floor = prod(1 - smallest cost ratio); the ratio is at most
    best accuracy x floor / best other; a cell whose target needs > 100% accuracy is marked, and
    the pooled need is solved with that cell at 100%."""
    from bench.render_headroom import target_needs

    cells = [{"dataset": "a", "objectives": "o", "ceiling": {"best_ratios": [0.2, 0.1, 0.0]}},
             {"dataset": "b", "objectives": "o", "ceiling": {"best_ratios": [0.01, 0.5, 0.0]}}]
    pairs = [{"name": "a/o/40", "hv": {"joint": {0: 0.70, 1: 0.71}, "staged": {0: 0.7, 1: 0.7},
                                       "bits": {0: 0.1}}},
             {"name": "b/o/40", "hv": {"joint": {0: 0.48}, "arch": {0: 0.49}}}]
    text = "\n".join(target_needs(cells, pairs, ("arch", "staged", "bits")))
    # a: floor 0.9, best accuracy 0.8, best other 0.7 -> at most 1.029 (at 100%: 1.286); the
    # target 1.05 needs 1.05 * 0.7 / 0.9 = 0.817
    assert "| a/o/40 | 0.900 | 0.800 | 1.029 | 1.286 | 0.817 |" in text
    # b: floor 0.5 against 0.49: 1.02 at 100%, the target needs 1.029 -> impossible
    assert "| b/o/40 | 0.500 | 0.990 | 1.010 | 1.020 | 1.029 (impossible) |" in text
    # pooled (3 pairs): b at 100% (1.020), a needs (3 * 1.05 - 1.020) / (2 * 0.9 / 0.7)
    assert f"validation accuracy {(3 * 1.05 - 0.5 / 0.49) / (2 * 0.9 / 0.7):.3f}" in text
    assert target_needs([], pairs, ("arch",)) == []


def test_bench_train_runs_one_job_per_core_without_a_gpu_and_splits_the_cores() -> None:
    from bench_train import default_jobs, threads_per_job

    assert default_jobs(2, gpu=False) == 2 and default_jobs(16, gpu=False) == 16
    assert default_jobs(16, gpu=True) == 1 and default_jobs(0, gpu=False) == 1
    assert threads_per_job(2, 2) == 1 and threads_per_job(2, 1) == 2
    assert threads_per_job(16, 8) == 2 and threads_per_job(2, 8) == 1


def test_bench_train_only_keeps_what_the_picked_jobs_wait_on() -> None:
    from bench_train import only

    todo = [{"name": "resnet10t", "after": None}, {"name": "supernet", "after": "resnet10t"},
            {"name": "deit", "after": None}, {"name": "hard", "after": "resnet10t"},
            {"name": "fid-00", "after": None}, {"name": "fid-01", "after": None}]
    assert [j["name"] for j in only(todo, ["hard", "fid-*"])] == [
        "resnet10t", "hard", "fid-00", "fid-01"]
    assert [j["name"] for j in only(todo, ["deit"])] == ["deit"]
    assert only(todo, ["nothing"]) == []


def test_bench_train_rejects_a_negative_job_count(tmp_path) -> None:
    import subprocess
    import sys

    from bench_train import ROOT

    folder = ROOT / "runs" / "bench-train" / "quickstart"
    existed = folder.exists()
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"),
                        str(ROOT / "studies" / "quickstart.yaml"), "--jobs", "-1"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: --jobs: -1: must be >= 1 (or 0: one per core without a GPU)"]
    assert folder.exists() == existed  # nothing written


def test_bench_train_reuses_a_job_only_under_the_same_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """make bench-train's cache: a finished job is stale once the training revision, recipe,
    data or (for models built from it) the space changes; other training code is reported."""
    import json

    import bench_train
    from bench_train import fidelity_configs, stale_jobs, train_key
    from helpers import write_tiny_study

    from jointopt import Study

    study = Study.from_yaml(write_tiny_study(tmp_path))
    key = train_key(study)
    ref = {"name": "resnet10t", "argv": ["train-fixed", "s.yaml", "--model", "timm:resnet10t"]}
    ref_key = train_key(study, ref)
    assert ref_key != key
    assert train_key(Study.from_yaml(write_tiny_study(tmp_path))) == key
    other = write_tiny_study(tmp_path, train={"epochs": 3, "batch_size": 16,
                                              "warmup_epochs": 1, "bf16": False})
    assert train_key(Study.from_yaml(other)) != key
    assert train_key(Study.from_yaml(other), ref) != ref_key
    # other training images (the train split's fingerprint) give another key
    (tmp_path / "fewer").mkdir()
    fewer = write_tiny_study(tmp_path / "fewer", dataset={"kind": "synthetic", "image_size": 32,
                                                          "channels": 1, "per_class": 10})
    assert train_key(Study.from_yaml(fewer)) != key
    # where it trains is not part of the key
    cuda = write_tiny_study(tmp_path, train={"epochs": 2, "batch_size": 16,
                                             "warmup_epochs": 1, "bf16": False,
                                             "device": "cuda"})
    assert train_key(Study.from_yaml(cuda)) == key
    # a teacher changes the supernet, not a train-fixed model (which learns from labels only:
    # adding resnet10t as the study's teacher does not retrain resnet10t)
    taught = Study.from_yaml(write_tiny_study(tmp_path, train={
        "epochs": 2, "batch_size": 16, "warmup_epochs": 1, "bf16": False, "threads": 1,
        "teacher": "timm:resnet10t", "teacher_mode": "hard"}))
    assert train_key(taught) != key and train_key(taught, ref) == ref_key
    # ... and section 1's cached references are keyed the same way: the teacher settings do
    # not change a reference, any other recipe setting does
    from bench.common import reference_paths
    plain = Study.from_yaml(write_tiny_study(tmp_path, train={
        "epochs": 2, "batch_size": 16, "warmup_epochs": 1, "bf16": False, "threads": 1}))
    assert reference_paths(taught, "timm:resnet10t", 2) == \
        reference_paths(plain, "timm:resnet10t", 2)
    (tmp_path / "lr").mkdir()
    faster = Study.from_yaml(write_tiny_study(tmp_path / "lr", train={
        "epochs": 2, "batch_size": 16, "warmup_epochs": 1, "bf16": False, "threads": 1,
        "lr": 0.01}))
    assert reference_paths(faster, "timm:resnet10t", 2)[0].name != \
        reference_paths(plain, "timm:resnet10t", 2)[0].name
    # a study with a teacher trains that teacher first, and its own teacher arm is the study
    monkeypatch.setattr(bench_train, "teacher_dir", lambda s: tmp_path / f"arms-{s.name}")
    names = {j["name"]: j for j in bench_train.jobs(taught.path, taught, 0)}
    assert names["supernet"]["after"] == "resnet10t" and "hard" not in names
    assert names["soft"]["after"] == "resnet10t"
    assert bench_train.jobs(plain.path, plain, 0)[0]["after"] is None
    # a new space (a conv stem) retrains the supernet-shaped jobs, not the references
    study = Study.from_yaml(write_tiny_study(tmp_path))
    space = study.space_path.read_text()
    study.space_path.write_text(space.replace("supernet:\n", "supernet:\n  stem: conv\n", 1))
    assert "stem: conv" in study.space_path.read_text()
    assert train_key(study) != key and train_key(study, ref) == ref_key
    study.space_path.write_text(space)
    # a new training revision retrains everything; a path under the checkout is keyed relative
    monkeypatch.setattr("jointopt.train.TRAINING_REVISION", 10**6)
    assert train_key(study) != key and train_key(study, ref) != ref_key
    monkeypatch.undo()
    arm = {"name": "soft", "argv": ["train", str(bench_train.ROOT / "runs" / "x.yaml")]}
    assert train_key(study, arm) == train_key(study, {"name": "soft",
                                                      "argv": ["train", "runs/x.yaml"]})
    todo = [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]
    keys = dict.fromkeys("abcd", key)
    (tmp_path / "a.json").write_text(json.dumps({"key": key}))
    (tmp_path / "b.json").write_text(json.dumps({"key": "0123456789ab"}))
    (tmp_path / "d.json").write_text(json.dumps({"key": key, "code": "000000000000"}))
    assert stale_jobs(tmp_path, todo, keys) == ["b"]
    assert "d.json: trained by other training code" in capsys.readouterr().err
    # fidelity configs: distinct, valid, some with every block merging
    study = Study.from_yaml(write_tiny_study(tmp_path))
    cfgs = fidelity_configs(study, 6)
    assert len({c.key() for c in cfgs}) == len(cfgs) >= 5
    assert any(c.merges and all(r > 0 for r in c.merges) for c in cfgs) == \
        (len(study.space.choices["tome_r"]) > 1)


def _precision_record(date: str, fp32_thr: float, int8_thr: float) -> dict:
    def cell(lat: float, thr: float) -> dict:
        return {"label": "x", "latency_ms": lat, "throughput_ips": thr, "model_bytes": 1}

    table = {}
    for arch in ("largest", "d4e128h2m3"):
        for rt, slow in (("openvino", 1.0), ("onnxruntime", 0.8)):
            table[f"{arch}|r0|w32a32|{rt}|t2"] = cell(2.0 / slow, fp32_thr * slow)
            table[f"{arch}|r0|w16a16|{rt}|t2"] = cell(1.5 / slow, 1.5 * fp32_thr * slow)
            table[f"{arch}|r0|w8a8|{rt}|t2"] = cell(1.0 / slow, int8_thr * slow)
    return {"date": date, "commit": "abc1234", "command": "python benchmarks/precision.py",
            "machine": "vm", "threads": 2, "batch": 64, "rounds": 5, "default_runtime": "openvino",
            "versions": {}, "precision": table}


def _rendered(monkeypatch, section: str, recs: list[dict]) -> str:
    """The text benchmarks/make_results.py's ``section`` renders from records ``recs``."""
    import make_results

    monkeypatch.setattr(make_results, "_records", lambda name: recs)
    lines: list[str] = []
    getattr(make_results, section)(lines)
    return "\n".join(lines)


def test_precision_section_checks_the_latest_run_and_lists_every_run(monkeypatch) -> None:
    recs = [_precision_record("2026-11-30 11:00:00", 400.0, 740.0),
            _precision_record("2026-12-01 12:00:00", 1000.0, 2270.0)]
    text = _rendered(monkeypatch, "_precision", recs)
    # the verdicts are the latest run's: 2270 / 1000 = 2.27x at batch 64, met
    assert "| w8a8 vs fp32, batch 64 | 2.27x | >= 2x | met |" in text
    # both runs are listed with the host's fp32 speed and their own ratios (740 / 400 = 1.85x)
    assert "| 2026-11-30 11:00:00 (abc1234) | 5 | 400 | 2.00x | 1.85x | 1.50x |" in text
    assert "| 2026-12-01 12:00:00 (abc1234) | 5 | 1000 | 2.00x | 2.27x | 1.50x |" in text
    # a later one-round run (make bench-quick) is listed, but the verdicts stay the 5-round one's
    recs.append({**_precision_record("2026-12-02 12:00:00", 1000.0, 1500.0), "rounds": 1})
    text = _rendered(monkeypatch, "_precision", recs)
    assert "| w8a8 vs fp32, batch 64 | 2.27x | >= 2x | met |" in text
    assert "| 2026-12-02 12:00:00 (abc1234) | 1 | 1000 | 2.00x | 1.50x | 1.50x |" in text


def test_evaluation_cost_tables_list_the_runs_that_measured_them(monkeypatch) -> None:
    row = {"accuracy": 0.9, "latency_ms": 1.0, "throughput_ips": 900.0,
           "latency_runtime": "openvino-f32", "macs": 10, "energy_mj": 0.1}
    old = {"date": "2026-11-01 10:00:00", "commit": "old1234", "command": "eval_axes.py",
           "machine": "vm", "n_configs": 12, "eval_seconds_median": 2.0,
           "eval_seconds_cached_median": 0.01, "rows": {"baseline": row},
           "ratios": {"rmax_vs_r0_throughput": 1.4, "w8a8_vs_fp32_throughput": 2.0,
                      "smallest_w8a8_rmax_vs_baseline_throughput": 9.0}}
    new = {**old, "date": "2026-12-02 16:00:00", "commit": "new5678",
           "load_seconds_sequential_median": 0.6, "load_seconds_side_by_side_median": 0.4,
           "load_speedup_median": 1.38, "int_configs": 8,
           "phase_seconds_median": {"build": 0.52, "predict": 0.24, "export": 0.41}}
    newer = {**new, "date": "2026-12-02 21:00:00", "commit": "qdq9abc",
             "export_int_speedup_median": 2.61,
             "phase_seconds_median": {**new["phase_seconds_median"],
                                      "export_int_qdq": 0.31, "export_int_brevitas": 0.83}}
    text = _rendered(monkeypatch, "_eval_axes", [old, new, newer])
    assert "| 2026-12-02 21:00:00 | qdq9abc | 8 | 0.83 | 0.31 | 2.61x |" in text
    assert "new5678 | 8 |" not in text  # exported one way only: not in the export table
    assert "| 2026-12-02 16:00:00 | new5678 | 12 (8) | 0.52 | 0.24 | 0.41 |  |  |" in text
    assert "| 2026-12-02 16:00:00 | new5678 | 12 | 0.60 | 0.40 | 1.38x |" in text
    assert "| build | predict | export | export_int_qdq | export_int_brevitas |" in text
    assert "old1234 | 12 |" not in text  # measured neither: in the history table only
    assert "| 2026-11-01 10:00:00 | old1234 | 1.40x |" in text


def test_section_2_test_split_tables_come_from_the_numbers(tmp_path) -> None:
    cell = _joint_record()

    def runs(hv: float) -> list[dict]:
        return [{"seed": 0, "exhausted": False, "test_hv_40": hv, "test_hv_60": hv,
                 "test_hv_120": hv + 0.01},
                {"seed": 1, "exhausted": False, "test_hv_40": hv}]

    test = {"dataset": "wm811k", "objectives": "latency", "source_run": "r1",
            "source_commit": "abc", "commit": "def", "baseline_test_accuracy": 0.85,
            "n_configs_scored": 12,
            "searches": {**{name: {"runs": runs(hv)} for name, hv in
                            (("joint", 0.5), ("arch", 0.4), ("tokens", 0.1),
                             ("staged", 0.52), ("joint-nsga2", 0.3))},
                         "bits": {"runs": [{"seed": 0, "exhausted": True,
                                            "test_hv_40": 0.2}]}}}
    text = "\n".join(render_joint.joint_test([cell], [test]))
    assert "| joint (axiswise) | 0.5000 ± 0.0000 (2) | 0.5000 ± 0.0000 (1) | 0.5100" in text
    # the exhausted grid's one front stands at every budget, and a 40-config run has no 60
    assert "| bits only (grid) | 0.2000 ± 0.0000 (1) | 0.2000 ± 0.0000 (1) | 0.2000" in text
    assert "| wm811k/latency/40 | 0.962, 0.962 | 0.962 |" in text  # 0.5 / staged's 0.52
    assert "joint's test HV at 60 0.5000, best other at 120 0.5300 (staged (paper))" in text
    # no test record for the run section 2 shows: nothing beside it
    assert render_joint.joint_test([cell], [{**test, "source_run": "r0"}]) == []


def test_joint_test_cli_refuses_a_run_without_section_2_records(tmp_path, capsys) -> None:
    from bench import joint_test

    (tmp_path / "bench_joint.jsonl").write_text("")
    assert joint_test.main(["--run-dir", str(tmp_path / "nope"),
                            "--results", str(tmp_path)]) == 2
    assert "no section-2 record has run_dir" in capsys.readouterr().err
    assert not (tmp_path / "bench_joint_test.jsonl").exists()


def test_sampler_variants_table_sits_beside_the_runs_own_searches() -> None:
    cell = _joint_record()  # run r1: joint 0.6, staged 0.55 (best other) in seeds 0 and 1
    var = {"name": "warm", "sampler": {"name": "axiswise", "warm_start": True},
           "dataset": "wm811k", "objectives": "latency", "source_run": "r1",
           "source_commit": "abc", "trials": 40, "long_trials": 120, "long_seeds": 1,
           "runs": [{"seed": 0, "hv_40": 0.62, "test_hv_40": 0.5, "hv_60": 0.63,
                     "hv_120": 0.64},
                    {"seed": 1, "hv_40": 0.58, "test_hv_40": 0.4}]}
    text = "\n".join(render_joint.variants([var], [cell], []))
    assert ('| warm (`{"name": "axiswise", "warm_start": true}`) | wm811k/latency | 40 | 2 | '
            '0.6000 | 0.6000 | 0.5500 | 0.4500 | n/a |') in text
    assert "| wm811k/latency | 120 | 1 | 0.6400 | 0.6000 | 0.5500 |" in text
    # section 2's comparison with the variant in joint's place (the others as recorded)
    assert "replaced: wm811k/latency: joint;" in text
    assert "| wm811k/latency/40 | 1.127, 1.055 | 1.091 |" in text  # 0.62, 0.58 vs staged 0.55
    assert "| latency: joint HV at 60 vs best other at 120 | 0.6300 | >= 0.5500 | met |" in text
    # a staged variant with the same options takes staged's place too
    staged = {**var, "name": "staged-warm", "sampler": {"name": "staged", "warm_start": True},
              "runs": [{"seed": 0, "hv_40": 0.62, "hv_60": 0.6, "hv_120": 0.7},
                       {"seed": 1, "hv_40": 0.5}]}
    text = "\n".join(render_joint.variants([var, staged], [cell], []))
    assert "replaced: wm811k/latency: joint, staged;" in text
    assert "| wm811k/latency/40 | 1.000, 1.160 |" in text  # seed 1: 0.58 over 0.5 (arch, variant)
    assert "| latency: joint HV at 60 vs best other at 120 | 0.6300 | >= 0.7000 | missed |" \
        in text
    assert render_joint.variants([{**var, "source_run": "elsewhere"}], [cell], []) == []


@pytest.mark.parametrize("args, message", [
    (["--name", "a b", "--sampler", '{"name": "axiswise"}'], "--name 'a b'"),
    (["--name", "v", "--sampler", "{nope"], "--sampler: not JSON"),
    (["--name", "v", "--sampler", '{"name": "annealing"}'], "--sampler name 'annealing'"),
    (["--name", "v", "--sampler", '{"name": "axiswise", "warmth": 1}'], "warmth"),
])
def test_joint_variants_cli_rejects_bad_input(tmp_path, capsys, args, message) -> None:
    import joint_variants

    (tmp_path / "bench_joint.jsonl").write_text("")
    assert joint_variants.main(["--run-dir", str(tmp_path), "--results", str(tmp_path),
                                *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bench_joint_variants.jsonl").exists()


def test_fidelity_seeds_noise_ceiling_from_numbers() -> None:
    """Seed replicates: sigma = rms(difference) / sqrt 2; the share of the configs' spread
    that is not noise, and Greiner's tau = (2 / pi) asin(share)."""
    from bench.render_seeds import fidelity_seeds

    def rec(job: str, a: float, b: float) -> dict:
        return {"study": "studies/deeppcb.yaml", "job": job, "seed": 1, "epochs": 40,
                "commit": "abc", "machine": "m", "seconds": 10.0,
                "config": {"depth": 2, "embed_dim": 64, "num_heads": 1, "mlp_ratio": 2.0,
                           "tome_r": 0, "w_bits": 32, "a_bits": 32},
                "seed0": {"test_accuracy": a}, "replicate": {"test_accuracy": b}}

    recs = [rec("fid-00", 0.90, 0.92), rec("fid-01", 0.94, 0.92), rec("fid-02", 0.96, 0.96)]
    fid = [{"dataset": "deeppcb", "configs": [
        {"precision": "w32a32", "standalone_test": x} for x in (0.90, 0.94, 0.96)] + [
        {"precision": "w8a8", "standalone_test": 0.5}]}]
    text = "\n".join(fidelity_seeds(recs, fid))
    sigma = math.sqrt((0.02 ** 2 + 0.02 ** 2 + 0) / 3 / 2)
    assert f"standard deviation of one config's test accuracy: {sigma * 100:.2f} pts" in text
    s = float(np.std([0.90, 0.94, 0.96], ddof=1))  # the w8a8 row is not counted
    rel = 1 - sigma ** 2 / s ** 2
    assert f"spread by {s * 100:.2f} pts" in text
    assert f"is about {2 / math.pi * math.asin(rel):.2f}" in text
    assert "| fid-01 | `d2_e64_h1_m2_r0_w32a32` | 0.940 | 0.920 | -2.00 pts | 10 |" in text
    assert fidelity_seeds([], fid) == []
