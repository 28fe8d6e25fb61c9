"""What the report computes before it draws: storage counts, importances, training history,
and the `jointopt report` command on a real study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from helpers import variant
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from jointopt import Study
from jointopt.cli import main
from jointopt.pareto import Objective
from jointopt.report.counts import TrialCounts
from jointopt.report.effects import IMPORTANCE_AXES, importances
from jointopt.report.figures import hover_text
from jointopt.report.training import load_history


def _trial(state: TrialState, **attrs: Any) -> optuna.trial.FrozenTrial:
    values = [0.5] if state == TrialState.COMPLETE else None
    return create_trial(state=state, values=values, user_attrs=attrs, params={"x": 1},
                        distributions={"x": CategoricalDistribution([1, 2])})


def test_counts_account_for_every_stored_trial() -> None:
    a = {"config": {"depth": 2}, "config_key": "a"}
    b = {"config": {"depth": 3}, "config_key": "b"}
    trials = [
        _trial(TrialState.COMPLETE, **a), _trial(TrialState.COMPLETE, **b),
        _trial(TrialState.COMPLETE, **a, repeat_of=0),  # reused trial 0's measurement
        _trial(TrialState.COMPLETE, **b, repeat_of=1),
        _trial(TrialState.COMPLETE, config={"depth": 9}, config_key="z", invalid="depth=9"),
        _trial(TrialState.FAIL), _trial(TrialState.RUNNING),
    ]
    c = TrialCounts.from_trials(trials)
    assert (c.total, c.complete, c.repeats, c.invalid, c.distinct, c.measured) == (7, 5, 2, 1, 2, 2)
    assert c.states == {"COMPLETE": 5, "FAIL": 1, "RUNNING": 1}
    assert c.sentence() == (
        "The storage holds 7 trials: 5 complete, 1 fail, 1 running. Of the complete ones: "
        "2 distinct configs; 2 repeats of an earlier config (reusing its measurement, shown "
        "once); 1 invalid config (rejected by the search space, not measured).")
    # A config measured twice (its first timing was contended, so not reused) is said so.
    again = TrialCounts.from_trials([_trial(TrialState.COMPLETE, **a)] * 2)
    assert again.distinct == 1 and "1 config measured more than once" in again.sentence()


def _record(i: int, depth: int, embed: int, bits: int, rng: np.random.Generator
            ) -> dict[str, Any]:
    return {"number": i, "feasible": True, "valid": True,
            "config": {"depth": depth, "embed_dim": embed, "num_heads": [2] * depth,
                       "mlp_ratio": float(rng.choice([2.0, 3.0])), "tome_r": 0,
                       "w_bits": bits, "a_bits": bits},
            # accuracy follows depth alone; latency follows the precision alone
            "metrics": {"accuracy": 0.5 + 0.1 * depth + rng.normal(0, 0.005),
                        "latency_ms": (2.0 if bits == 32 else 1.0) + rng.normal(0, 0.01)}}


def test_importances_find_the_axis_that_decides_each_objective() -> None:
    rng = np.random.default_rng(0)
    records = [_record(i, int(rng.choice([2, 3, 4])), int(rng.choice([64, 96])),
                       int(rng.choice([32, 8])), rng) for i in range(60)]
    objectives = [Objective("accuracy", "maximize"), Objective("latency_ms", "minimize")]
    scores = importances(records, objectives)
    assert set(scores) == {"accuracy", "latency_ms"}
    for key, axis in (("accuracy", "depth"), ("latency_ms", "precision")):
        assert set(scores[key]) == set(IMPORTANCE_AXES)
        assert max(scores[key], key=lambda a: scores[key][a]) == axis, scores[key]
        assert scores[key]["tome_r (total)"] == 0.0  # every trial shares r = 0
    assert importances(records[:3], objectives) == {}  # too few to say anything


def test_hover_text_names_the_runtime_and_modelled_energy() -> None:
    rec = {"number": 7, "config": {"depth": 2, "embed_dim": 64, "num_heads": [2, 1],
                                   "mlp_ratio": 3.0, "tome_r": [4, 0], "w_bits": 4, "a_bits": 8},
           "metrics": {"accuracy": 0.91234, "latency_ms": 1.2345, "throughput_ips": 2345.6,
                       "energy_mj": 0.0123, "energy_source": "model:horowitz45",
                       "latency_runtime": "onnxruntime-int8 (nearest to w4a8)"}}
    assert hover_text(rec).split("<br>") == [
        "<b>trial 7</b> · w4a8", "depth 2 · embed 64 · heads 2,1", "mlp 3 · r 4,0",
        "accuracy 0.9123", "latency 1.23 ms (onnxruntime-int8)", "throughput 2,346 img/s",
        "energy 0.0123 mJ (modelled)"]


def test_training_history_round_trips_from_train_state(trained_tiny: Path,
                                                       tmp_path: Path) -> None:
    study = Study.from_yaml(trained_tiny)
    history = load_history(study.train_state)
    assert history is not None and len(history) == study.train.epochs
    assert [row["epoch"] for row in history] == [float(e + 1) for e in range(len(history))]
    assert {"loss", "val_largest", "val_smallest"} <= set(history[0])
    assert all(0.0 <= row["val_largest"] <= 1.0 for row in history)
    assert load_history(tmp_path / "missing.pt") is None


@pytest.mark.slow
def test_report_command_counts_match_the_storage(trained_tiny: Path, tmp_path: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    study_path = variant(trained_tiny, tmp_path, "rep", n_trials=5)
    assert main(["search", str(study_path), "-q"]) == 0
    out = tmp_path / "report.html"
    capfd.readouterr()
    assert main(["report", str(study_path), "--out", str(out)]) == 0
    assert capfd.readouterr().out.strip() == f"wrote {out}"
    study = Study.from_yaml(study_path)
    trials = optuna.load_study(study_name="rep", storage=study.storage_url).trials
    page = out.read_text(encoding="utf-8")
    assert TrialCounts.from_trials(trials).sentence() in page
    assert f"The storage holds {len(trials)} trials" in page
    epochs = study.train.epochs
    assert f"{epochs} epochs (<code>{study.train_state}</code>)" in page
    assert 'id="fig-training"' in page
