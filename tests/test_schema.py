"""The one schema every study, search-space and config file goes through (jointopt.schema)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from jointopt.controllers.spec import RaySpec, SamplerSpec, SearchSpec
from jointopt.errors import UserError
from jointopt.schema import Where, parse, setting, yaml_keys
from jointopt.space import Choices, JointConfig, SupernetShape
from jointopt.study import DatasetSpec, EvalSpec, Study, TrainSpec

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    width: int = setting(4, gt=0)


@dataclass(frozen=True)
class Section:
    name: str = setting(missing="is required (a name)")
    root: Path | None = setting(None, path=True)
    rate: float = setting(0.5, ge=0, lt=1)
    mode: str = setting("a", choices=("a", "b", "c"))
    sizes: tuple[int, ...] = setting((1,), nonempty=True, gt=0)
    heads: int | tuple[int, ...] = 1
    inner: Inner = setting(factory=Inner)
    limit: int | None = None
    given: int = setting(0, yaml=False)


def _parse(data: object, **given: object) -> Section:
    return parse(Section, data, where=Where("s.yaml", "sec", Path("/base")), **given)


def _error(data: object) -> str:
    with pytest.raises(UserError) as e:
        _parse(data)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("s.yaml: ")
    return msg


def test_types_paths_lists_and_nested_sections_parse() -> None:
    s = _parse({"name": "x", "root": "data", "rate": 0, "mode": "c", "sizes": [3, 2.0],
                "heads": [1, 2], "inner": {"width": 8}, "limit": None}, given=7)
    assert s == Section(name="x", root=Path("/base/data"), rate=0.0, mode="c", sizes=(3, 2),
                        heads=(1, 2), inner=Inner(8), limit=None, given=7)
    assert isinstance(s.rate, float) and isinstance(s.sizes[1], int)
    assert _parse({"name": "y", "root": "/abs"}).root == Path("/abs")
    assert yaml_keys(Section) == ("name", "root", "rate", "mode", "sizes", "heads", "inner",
                                  "limit")


@pytest.mark.parametrize(("data", "expect"), [
    ({}, "sec.name=None: is required (a name)"),
    ({"name": "x", "colour": 1}, "unknown key 'sec.colour'"),
    ({"name": 3}, "sec.name=3: must be str"),
    ({"name": "x", "rate": 1}, "sec.rate=1.0: must be < 1"),
    ({"name": "x", "rate": -0.5}, "sec.rate=-0.5: must be >= 0"),
    ({"name": "x", "rate": float("nan")}, "sec.rate=nan: must be a finite number"),
    ({"name": "x", "mode": "d"}, "sec.mode='d': must be a, b or c"),
    ({"name": "x", "sizes": []}, "sec.sizes=[]: must be a non-empty list"),
    ({"name": "x", "sizes": [2, 0]}, "sec.sizes=0: must be > 0"),
    ({"name": "x", "sizes": 2}, "sec.sizes=2: must be a non-empty list"),
    ({"name": "x", "heads": []}, "sec.heads=[]: must not be an empty list"),
    ({"name": "x", "heads": [1, "two"]}, "sec.heads='two': must be int"),
    ({"name": "x", "inner": {"width": 0}}, "sec.inner.width=0: must be > 0"),
    ({"name": "x", "inner": 5}, "sec.inner=5: must be a mapping"),
    ({"name": "x", "given": 1}, "unknown key 'sec.given'"),
    ([1], "sec=[1]: must be a mapping"),
])
def test_bad_values_name_file_key_and_value(data: object, expect: str) -> None:
    assert expect in _error(data)


def test_every_section_of_the_study_and_space_files_is_one_schema() -> None:
    """Every user-file section is a schema dataclass: its YAML keys are its declared fields."""
    assert yaml_keys(Study) == ("name", "output", "seed", "dataset", "search_space", "train",
                                "evaluate", "search")
    assert "lr" in yaml_keys(TrainSpec) and "root" in yaml_keys(DatasetSpec)
    assert "runtime" in yaml_keys(EvalSpec) and "ray" in yaml_keys(SearchSpec)
    assert "seed" not in yaml_keys(SearchSpec)  # the study's seed, or search.sampler.seed
    assert yaml_keys(RaySpec) == ("address", "max_concurrent_trials", "cpus_per_trial",
                                  "max_failures")
    assert yaml_keys(SamplerSpec) == ("name", "seed")  # other keys are the sampler's options
    assert set(yaml_keys(Choices)) >= {"depth", "precision", "w_bits", "a_bits"}
    assert yaml_keys(SupernetShape)[0] == "img_size"
    assert "depth" in yaml_keys(JointConfig)


def test_shipped_studies_parse_and_the_sampler_seed_overrides_the_study_seed(
        tmp_path: Path) -> None:
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        study = Study.from_yaml(path)
        assert study.search.study_name and study.output.is_absolute()
        assert study.space_path.is_absolute() and study.search.sampler.name
    space = ROOT / "search_spaces" / "quickstart.yaml"
    for sampler, seed in (("nsga2", 5), ("{name: random, seed: 9}", 9)):
        study_file = tmp_path / "s.yaml"
        study_file.write_text(f"seed: 5\nsearch_space: {space}\ndataset: {{image_size: 64}}\n"
                              f"search: {{sampler: {sampler}}}\n")
        s = Study.from_yaml(study_file)
        assert (s.name, s.search.study_name, s.search.seed) == ("s", "s", seed)
        assert s.output == (tmp_path.parent / "runs" / "s").resolve()


def test_sampler_options_are_kept_and_bad_samplers_are_named() -> None:
    spec = parse(SearchSpec, {"sampler": {"name": "nsga2", "population_size": 8, "seed": 2}},
                 where=Where("s.yaml", "search"))
    assert spec.sampler == SamplerSpec("nsga2", 2, {"population_size": 8})
    with pytest.raises(UserError, match=r"search\.sampler\.name='annealing': unknown"):
        parse(SearchSpec, {"sampler": {"name": "annealing"}}, where=Where("s.yaml", "search"))
    with pytest.raises(UserError, match=r"search\.sampler\.name=None: is required"):
        parse(SearchSpec, {"sampler": {"seed": 1}}, where=Where("s.yaml", "search"))
    with pytest.raises(UserError, match=r"search\.sampler=5: must be a name"):
        parse(SearchSpec, {"sampler": 5}, where=Where("s.yaml", "search"))
