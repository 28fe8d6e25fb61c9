"""Balanced accuracy and per-class recall on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jointopt.metrics import balanced_accuracy, confusion_matrix, per_class_recall


def test_known_values() -> None:
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 1, 1, 0, 2, 2]
    recall = per_class_recall(preds, labels, 3)
    assert recall.tolist() == [0.75, 0.5, 1.0]
    assert balanced_accuracy(preds, labels, 3) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert confusion_matrix(preds, labels, 3).tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]


def test_majority_guess_scores_chance_not_its_share() -> None:
    labels = torch.tensor([0] * 90 + [1] * 5 + [2] * 5)
    preds = torch.zeros(100, dtype=torch.int64)
    assert float((preds == labels).float().mean()) == pytest.approx(0.9)
    assert balanced_accuracy(preds, labels, 3) == pytest.approx(1 / 3)


def test_absent_class_left_out_and_tensors_accepted() -> None:
    labels = torch.tensor([0, 0, 2, 2])
    preds = torch.tensor([0, 1, 2, 2])
    recall = per_class_recall(preds, labels, 3)
    assert recall[0] == 0.5 and math.isnan(recall[1]) and recall[2] == 1.0
    assert balanced_accuracy(preds, labels, 3) == pytest.approx(0.75)
    assert balanced_accuracy([], [], 3) == 0.0
    assert balanced_accuracy(np.array([1, 1]), np.array([1, 1]), 2) == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="length"):
        balanced_accuracy([0, 1], [0], 2)
    with pytest.raises(ValueError, match="labels hold values outside 0..1"):
        per_class_recall([0, 1], [0, 2], 2)


def test_scores_of_a_model() -> None:
    from jointopt.train import scores

    # a "model" that predicts class 0 for every image: right on the 6 of class 0 only
    images = torch.zeros(8, 1, 4, 4, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    out = scores(lambda x: torch.tensor([[1.0, 0.0, 0.0]]).expand(len(x), -1), images, labels, 3,
                 batch=3)
    assert out == {"accuracy": pytest.approx(0.75), "balanced_accuracy": pytest.approx(1 / 3)}


def test_summary_rows_carry_balanced_accuracy(trained_tiny) -> None:  # type: ignore[no-untyped-def]
    from jointopt import Study
    from jointopt.report.summary import subnet_rows, subnet_table

    study = Study.from_yaml(trained_tiny)
    net = study.load_supernet()
    rows = subnet_rows(study, net, ("val", "test"))
    assert [r["subnet"] for r in rows] == ["largest", "smallest"]
    for r in rows:
        for split in ("val", "test"):
            assert 0.0 <= r[f"{split}_balanced_accuracy"] <= 1.0
            assert 0.0 <= r[f"{split}_accuracy"] <= 1.0
    # the synthetic pattern set is balanced (6 x 40), so the two agree within a class's weight
    assert abs(rows[0]["val_accuracy"] - rows[0]["val_balanced_accuracy"]) < 0.2
    assert "test bal" in subnet_table(study, net, ("val", "test"))
