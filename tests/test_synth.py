"""Tests for the synthetic IC-package X-ray data set generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jointopt.data.splits import stratified_split
from jointopt.data.synth import CLASSES, generate, render, render_arrays
from jointopt.errors import UserError


def test_classes_are_the_six_defect_types() -> None:
    assert CLASSES == ("good", "void", "bridge", "missing_ball", "crack", "misalignment")


@pytest.mark.parametrize("name", CLASSES)
def test_render_is_deterministic_for_a_seed(name: str) -> None:
    a = render(name, np.random.default_rng([7, 1, 2]), 64)
    b = render(name, np.random.default_rng([7, 1, 2]), 64)
    c = render(name, np.random.default_rng([8, 1, 2]), 64)
    assert a.dtype == np.uint8 and a.shape == (64, 64)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_render_other_sizes_and_uses_the_range() -> None:
    for size in (32, 96):
        img = render("crack", np.random.default_rng(0), size)
        assert img.shape == (size, size)
        # Not blank or saturated: an X-ray with background, package and balls.
        assert int(img.max()) - int(img.min()) > 80


def test_render_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        render("scratch", np.random.default_rng(0), 64)


def test_render_arrays_independent_of_order_and_count() -> None:
    small, y_small = render_arrays(per_class=3, size=32, seed=5)
    big, y_big = render_arrays(per_class=5, size=32, seed=5)
    assert small.shape == (18, 32, 32) and y_small.tolist() == np.repeat(np.arange(6), 3).tolist()
    # Image i of class c depends only on (seed, c, i), not on how many are generated.
    for c in range(len(CLASSES)):
        assert np.array_equal(small[c * 3 : c * 3 + 3], big[c * 5 : c * 5 + 3])
    assert not np.array_equal(render_arrays(per_class=3, size=32, seed=6)[0], small)


def test_generate_writes_imagefolder_layout(tmp_path: Path) -> None:
    out = generate(tmp_path / "ds", per_class=5, size=32, seed=3)
    assert out == tmp_path / "ds"
    assert sorted(p.name for p in out.iterdir()) == sorted(CLASSES)
    arrays, _ = render_arrays(per_class=5, size=32, seed=3)
    for c, name in enumerate(CLASSES):
        files = sorted((out / name).iterdir())
        assert [f.name for f in files] == [f"{name}_{i:05d}.png" for i in range(5)]
        with Image.open(files[0]) as im:
            assert im.mode == "L" and im.size == (32, 32)
            assert np.array_equal(np.asarray(im), arrays[c * 5])


@pytest.mark.parametrize("kwargs", [{"per_class": 0}, {"size": 8}, {"seed": -1}])
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(UserError):
        generate(tmp_path, **kwargs)


def test_raw_pixel_nearest_neighbour_is_weak_but_above_chance() -> None:
    """The quickstart set (6 x 400, 64x64, seed 0) must not be solvable by 1-NN on pixels."""
    x, y = render_arrays(per_class=400, size=64, seed=0)
    train, _, test = stratified_split(y, seed=0)
    flat = x.reshape(len(x), -1).astype(np.float32)
    a, b = flat[train], flat[test]
    d2 = (b * b).sum(1)[:, None] - 2.0 * b @ a.T + (a * a).sum(1)[None, :]
    acc = float((y[train][d2.argmin(1)] == y[test]).mean())
    assert 0.25 < acc <= 0.80, acc
