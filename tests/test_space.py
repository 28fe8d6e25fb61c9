from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT, TINY_SPACE

from jointopt import JointConfig, SearchSpace
from jointopt.errors import UserError

QUICK = ROOT / "search_spaces" / "quickstart.yaml"


def test_config_round_trip_and_canonical_key() -> None:
    cfg = JointConfig.from_dict({"depth": 3, "embed_dim": 96, "num_heads": [2, 2, 2],
                                 "mlp_ratio": 3, "tome_r": [1, 0, 0], "w_bits": 8, "a_bits": 8})
    assert JointConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.heads == (2, 2, 2) and cfg.merges == (1, 0, 0)
    same = JointConfig(depth=3, embed_dim=96, num_heads=2, mlp_ratio=3.0, tome_r=(1, 0, 0),
                       w_bits=8, a_bits=8)
    assert cfg.key() == same.key()
    assert cfg.key() != JointConfig(depth=3, embed_dim=96, num_heads=2, mlp_ratio=3.0).key()


def test_config_rejects_unknown_key() -> None:
    with pytest.raises(UserError, match="unknown key 'heads'"):
        JointConfig.from_dict({"depth": 2, "embed_dim": 64, "heads": 2, "mlp_ratio": 2})


def test_quickstart_space_spans_max_and_min() -> None:
    space = SearchSpace.from_yaml(QUICK)
    assert space.max_config == JointConfig(depth=6, embed_dim=192, num_heads=4, mlp_ratio=4.0)
    small = space.min_config
    assert small.depth == 2 and small.embed_dim == 64 and small.w_bits < 16
    space.validate(small)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_heads": 5}, "num_heads"),
        ({"depth": 7}, "depth"),
        ({"w_bits": 5}, "w_bits"),
        ({"w_bits": 32, "a_bits": 8}, "a_bits"),
        ({"tome_r": 40}, "tome_r"),
        ({"embed_dim": 256}, "embed_dim"),
        ({"mlp_ratio": 5.0}, "mlp_ratio"),
    ],
)
def test_validate_names_field_and_value(change: dict, field: str) -> None:
    space = SearchSpace.from_yaml(QUICK)
    cfg = JointConfig.from_dict({**space.max_config.to_dict(), **change})
    with pytest.raises(UserError) as info:
        space.validate(cfg)
    msg = str(info.value)
    assert field in msg and str(list(change.values())[-1]) in msg and "\n" not in msg


def test_merge_limit_follows_tokens_left() -> None:
    space = SearchSpace.from_yaml(QUICK)  # 65 tokens enter block 0
    ok = JointConfig(depth=2, embed_dim=64, num_heads=1, mlp_ratio=2.0, tome_r=[32, 16])
    space.validate(ok)  # 65 -> 33 tokens, then (33 - 1) // 2 = 16 allowed
    bad = JointConfig(depth=2, embed_dim=64, num_heads=1, mlp_ratio=2.0, tome_r=[32, 17])
    with pytest.raises(UserError, match=r"tome_r\[1\]=17"):
        space.validate(bad)


def test_sample_is_seeded_and_valid() -> None:
    space = SearchSpace.from_dict(TINY_SPACE)
    a = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    cfgs = [space.sample(rng) for _ in range(50)]
    assert len({c.key() for c in cfgs}) > 10
    for c in cfgs:
        space.validate(c)


def test_params_round_trip() -> None:
    space = SearchSpace.from_yaml(QUICK)
    rng = np.random.default_rng(1)
    for _ in range(10):
        cfg = space.sample(rng)
        assert space.config_from_params(space.params_from_config(cfg)) == cfg.canonical()
    assert space.param_names()[:3] == ["depth", "embed_dim", "num_heads_0"]


def test_space_yaml_errors_name_file_key_value(tmp_path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("supernet: {depth: 2}\nchoices: {depth: [1, 2], embed_dim: [8], num_heads: [1],"
                 " mlp_ratio: [1.0], colour: [3]}\n")
    with pytest.raises(UserError, match=r"s\.yaml.*choices\.colour"):
        SearchSpace.from_yaml(p)
    p.write_text("supernet: {depth: two}\nchoices: {}\n")
    with pytest.raises(UserError, match=r"s\.yaml: supernet\.depth='two'"):
        SearchSpace.from_yaml(p)
    p.write_text("supernet: {depth: 2}\nchoices: {depth: [3], embed_dim: [8], num_heads: [1],"
                 " mlp_ratio: [1.0]}\n")
    with pytest.raises(UserError, match="depth=3"):
        SearchSpace.from_yaml(p)


def test_precision_axis_and_define_by_run_parameters() -> None:
    space = SearchSpace.from_dict(TINY_SPACE)  # legacy w_bits/a_bits lists: their valid pairs
    assert space.choices["precision"] == ("w32a32", "w16a16", "w8a32", "w8a16", "w8a8",
                                          "w4a32", "w4a16", "w4a8")
    assert space.param_names(1) == ["depth", "embed_dim", "num_heads_0", "mlp_ratio_0",
                                    "tome_r_0", "precision"]
    named = SearchSpace.from_dict({**TINY_SPACE, "choices": {
        **{k: v for k, v in TINY_SPACE["choices"].items() if not k.endswith("bits")},
        "precision": ["w8a8", "w32a32"]}})
    assert named.choices["precision"] == ("w8a8", "w32a32")
    with pytest.raises(UserError, match="choices.precision='w32a8'.*integer activations"):
        SearchSpace.from_dict({**TINY_SPACE, "choices": {
            **{k: v for k, v in TINY_SPACE["choices"].items() if not k.endswith("bits")},
            "precision": ["w32a8"]}})
    cfg = JointConfig.from_dict({"depth": 2, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1,
                                 "precision": "w4a16"})
    assert (cfg.w_bits, cfg.a_bits) == (4, 16) and cfg.precision == "w4a16"


def test_merge_choices_never_exceed_what_a_block_can_do() -> None:
    space = SearchSpace.from_dict({**TINY_SPACE, "choices": {**TINY_SPACE["choices"],
                                                             "tome_r": [0, 2, 4, 6]}})
    # 17 tokens: block 0 may merge 8, then at most 6 of 17 -> 11 tokens: block 1 merges <= 5,
    # then 11 - 5 = 6 tokens: block 2 merges <= 2
    assert space.merge_choices(0) == (0, 2, 4, 6)
    assert space.merge_choices(1) == (0, 2, 4)
    assert space.merge_choices(2) == (0, 2)
    rng = np.random.default_rng(0)
    for _ in range(200):  # every draw validates: a search cannot ask for an invalid config
        space.validate(space.sample(rng))
    assert space.size() == len(space.choices["embed_dim"]) * len(space.choices["precision"]) * (
        (2 * 2 * 4) + (2 * 2 * 4) * (2 * 2 * 3) + (2 * 2 * 4) * (2 * 2 * 3) * (2 * 2 * 2))
