"""The bad-input corpus: what a new user types wrong (used by ``test_bad_inputs.py``).

Each case is (name, setup, expected substrings): ``setup(ctx)`` writes the files the case
needs under ``ctx.root`` and returns the ``jointopt`` argv; the one error line must contain
every expected substring (``{study}`` stands for the study file's path).
"""

from __future__ import annotations

import hashlib
import os
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import TINY_SPACE

__all__ = ["CASES", "Ctx", "SECRET", "snapshot", "close_sockets"]

SECRET = "s3cr3t-Pa55"
BOMB = ("&a [1,1,1,1,1,1,1,1,1]", *(f"&{c} [{', '.join(['*' + p] * 9)}]"
                                    for p, c in zip("abcdefgh", "bcdefghi", strict=True)))


def _bomb_yaml(key: str) -> str:
    """A YAML "billion laughs": 9**9 leaves in a few hundred bytes (aliases are shared)."""
    defs = "\n".join(f"  - {b}" for b in BOMB)
    return f"_defs: &defs\n{defs}\n{key}: *i\n"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Ctx:
    """One case's folders: ``cwd`` (the working folder), ``parent/study`` (the study file's
    folder, its output in ``out``) and ``elsewhere`` (files a case points at)."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)  # set for the command, then undone

    @property
    def dir(self) -> Path:
        return self.root / "parent" / "study"

    @property
    def path(self) -> Path:
        return self.dir / "study.yaml"

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def study(self, space: dict[str, Any] | None = None, **overrides: Any) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "space.yaml").write_text(yaml.safe_dump(_merge(TINY_SPACE, space or {})))
        data = {"name": "tiny", "output": "out", "seed": 0,
                "dataset": {"kind": "synthetic", "image_size": 32, "channels": 1,
                            "per_class": 12},
                "search_space": "space.yaml",
                "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "bf16": False},
                "evaluate": {"calib_batches": 1, "batch_size": 8, "latency_runs": 3,
                             "warmup_runs": 1, "max_foreign_load": 1},
                "search": {"n_trials": 2, "sampler": {"name": "random", "seed": 0}}}
        self.path.write_text(yaml.safe_dump(_merge(data, overrides)))
        return str(self.path)

    def raw(self, text: str | bytes) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
        if isinstance(text, bytes):
            self.path.write_bytes(text)
        else:
            self.path.write_text(text)
        return str(self.path)

    def space_raw(self, text: str, **overrides: Any) -> str:
        path = self.study(**overrides)
        (self.dir / "space.yaml").write_text(text)
        return path

    def checkpoint(self, *, channels: int = 1, classes: int = 6, **shape: Any) -> Path:
        """An untrained supernet of the tiny space (checks read its shape, never its skill)."""
        from jointopt.space import SearchSpace
        from jointopt.supernet import ViTSupernet

        space = SearchSpace.from_dict(_merge(TINY_SPACE, {"supernet": shape}))
        ckpt = self.out / "supernet.safetensors"
        ViTSupernet(space.supernet, in_chans=channels, num_classes=classes,
                    space=space).save(ckpt)
        return ckpt

    def images(self, classes: dict[str, int], *, mode: str = "L", size: int = 8,
               name: str = "images") -> Path:
        """An ImageFolder tree: ``classes`` maps folder name to image count."""
        from PIL import Image

        root = self.root / "elsewhere" / name
        rng = np.random.default_rng(0)
        for cls, n in classes.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size, size) if mode in ("L", "I;16") else (size, size, len(mode))
                arr = rng.integers(0, 255, size=shape).astype(
                    np.uint16 if mode == "I;16" else np.uint8)
                Image.fromarray(arr).save(root / cls / f"{i:02d}.png")  # mode from the array
        return root

    def folder_study(self, root: Path, **overrides: Any) -> str:
        return self.study(**_merge({"dataset": {"kind": "folder", "root": str(root),
                                                "per_class": 1}}, overrides))

    def sqlite_study(self, name: str = "tiny") -> str:
        """An Optuna storage with study ``name`` in it, created the way a search creates it."""
        from jointopt import Study
        from jointopt.controllers.storage import open_storage, open_study

        study = Study.from_yaml(self.path)
        import dataclasses

        spec = dataclasses.replace(study.search, study_name=name)
        open_study(dataclasses.replace(study, search=spec), open_storage(study))
        return str(self.out / "optuna.db")


Setup = Callable[[Ctx], list[str]]
CASES: list[tuple[str, Setup, tuple[str, ...]]] = []


def case(name: str, *expect: str) -> Callable[[Setup], Setup]:
    """Register a case: its setup returns the argv; ``expect`` are substrings of the one line
    ("{study}" stands for the study file's path)."""

    def deco(fn: Setup) -> Setup:
        CASES.append((name, fn, expect))
        return fn

    return deco


def study_case(name: str, command: str, overrides: dict[str, Any], *expect: str) -> None:
    """A case whose study file has ``overrides`` and that runs ``jointopt command STUDY``."""
    def setup(c: Ctx) -> list[str]:
        return [*command.split(), c.study(**overrides)]

    CASES.append((name, setup, ("{study}", *expect)))


# ---- unknown keys at every level ---------------------------------------------------------------
study_case("unknown-top-key", "pareto", {"colour": 1}, "'colour'")
study_case("unknown-dataset-key", "train", {"dataset": {"rootdir": "x"}}, "'dataset.rootdir'")
study_case("unknown-train-key", "search", {"train": {"lr_max": 1}}, "'train.lr_max'")
study_case("unknown-evaluate-key", "report --out r.html", {"evaluate": {"fast": True}},
           "'evaluate.fast'")
study_case("unknown-search-key", "export --out ex", {"search": {"trials": 5}}, "'search.trials'")
study_case("unknown-ray-key", "search", {"search": {"ray": {"nodes": 3}}}, "'search.ray.nodes'")
study_case("unknown-sampler-option", "search",
           {"search": {"sampler": {"name": "nsga2", "populaton_size": 4}}},
           "search.sampler=", "populaton_size")


@case("unknown-space-key", "space.yaml", "'supernet.depthh'")
def _(c: Ctx) -> list[str]:
    return ["pareto", c.space_raw(yaml.safe_dump(_merge(TINY_SPACE, {"supernet": {"depthh": 2}})))]


@case("unknown-choices-key", "space.yaml", "'choices.width'")
def _(c: Ctx) -> list[str]:
    return ["summary", c.space_raw(yaml.safe_dump(_merge(TINY_SPACE, {"choices": {"width": [1]}})))]


@case("unknown-config-key", "--config", "'width'")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", '{"depth": 2, "embed_dim": 16, "num_heads": 1, '
            '"mlp_ratio": 1, "width": 3}']


# ---- wrong types -----------------------------------------------------------------------------
study_case("type-epochs-str", "train", {"train": {"epochs": "ten"}}, "train.epochs='ten'")
study_case("type-channels-list", "train", {"dataset": {"channels": [1]}}, "dataset.channels=[1]")
study_case("type-bool-str", "train", {"train": {"sandwich": "yes"}}, "train.sandwich='yes'")
study_case("type-n-trials-float", "search", {"search": {"n_trials": 2.5}},
           "search.n_trials=2.5")
study_case("type-name-int", "pareto", {"name": 5}, "name=5")
study_case("type-dataset-str", "train", {"dataset": "folder"}, "dataset='folder'")
study_case("type-constraints-str", "search", {"search": {"constraints": "accuracy >= 0.5"}},
           "search.constraints='accuracy >= 0.5'")
study_case("type-search-space-int", "pareto", {"search_space": 7}, "search_space=7")


@case("type-config-depth", "--config", "depth='four'")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", '{"depth": "four", "embed_dim": 16, '
            '"num_heads": 1, "mlp_ratio": 1}']


# ---- NaN and infinity in numeric fields ------------------------------------------------------
study_case("nan-lr", "search", {"train": {"lr": float("nan")}}, "train.lr=nan", "finite")
study_case("inf-min-lr", "train", {"train": {"min_lr": float("inf")}}, "train.min_lr=inf")
study_case("nan-weight-decay", "train", {"train": {"weight_decay": float("nan")}},
           "train.weight_decay=nan")
study_case("nan-label-smoothing", "train", {"train": {"label_smoothing": float("nan")}},
           "train.label_smoothing=nan")
study_case("nan-retry-seconds", "search", {"search": {"storage_retry_seconds": float("nan")}},
           "search.storage_retry_seconds=nan")
study_case("neg-inf-timeout", "search", {"search": {"timeout": float("-inf")}},
           "search.timeout=-inf")
study_case("negative-timeout", "search", {"search": {"timeout": -5}}, "search.timeout=-5.0",
           "> 0")
study_case("nan-foreign-load", "search", {"evaluate": {"max_foreign_load": float("nan")}},
           "evaluate.max_foreign_load=nan")
study_case("inf-cpus-per-trial", "search", {"search": {"ray": {"cpus_per_trial": float("inf")}}},
           "search.ray.cpus_per_trial=inf")
study_case("nan-sampler-option", "search",
           {"search": {"sampler": {"name": "nsga2", "mutation_prob": float("nan")}}},
           "search.sampler.mutation_prob=nan")


@case("nan-config-mlp-ratio", "--config", "mlp_ratio=nan")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", '{"depth": 2, "embed_dim": 16, "num_heads": 1, '
            '"mlp_ratio": .nan}']


@case("nan-space-choice", "space.yaml", "choices.mlp_ratio=nan")
def _(c: Ctx) -> list[str]:
    return ["pareto", c.study(space={"choices": {"mlp_ratio": [1.0, float("nan")]}})]


# ---- impossible values -----------------------------------------------------------------------
study_case("channels-2", "train", {"dataset": {"channels": 2}}, "dataset.channels=2")
study_case("image-size-vs-space", "train", {"dataset": {"image_size": 48}},
           "dataset.image_size=48", "32")
study_case("label-smoothing-1.5", "train", {"train": {"label_smoothing": 1.5}},
           "train.label_smoothing=1.5")
study_case("constraint-unparseable", "search",
           {"search": {"constraints": ["accuracy >= 0.5 or 1"]}},
           "search.constraints[0]='accuracy >= 0.5 or 1'")
study_case("max-concurrent-0", "search", {"search": {"ray": {"max_concurrent_trials": 0}}},
           "search.ray.max_concurrent_trials=0")
study_case("n-jobs-0", "search", {"search": {"n_jobs": 0}}, "search.n_jobs=0")
study_case("population-1", "search", {"search": {"sampler": {"name": "nsga2",
                                                             "population_size": 1}}},
           "search.sampler=", "'population_size': 1")
study_case("backend-dask", "search", {"search": {"backend": "dask"}}, "search.backend='dask'")
study_case("kind-zip", "train", {"dataset": {"kind": "zip"}}, "dataset.kind='zip'")
study_case("direction-typo", "search", {"search": {"objectives": {"accuracy": "maximise"}}},
           "search.objectives.accuracy='maximise'")


@case("patch-size-5", "space.yaml", "supernet.patch_size=5")
def _(c: Ctx) -> list[str]:
    return ["train", c.study(space={"supernet": {"patch_size": 5}})]


@case("config-heads-9", "--config", "num_heads", "9")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", '{"depth": 2, "embed_dim": 16, "num_heads": 9, '
            '"mlp_ratio": 1}']


# ---- malformed, empty, list-valued and tagged YAML -------------------------------------------
@case("malformed-yaml", "{study}", "invalid YAML at line 2")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("name: [unclosed\n")]


@case("empty-study", "{study}", "search_space=None", "is required")
def _(c: Ctx) -> list[str]:
    return ["search", c.raw("")]


@case("list-study", "{study}", "top level must be a mapping, got list")
def _(c: Ctx) -> list[str]:
    return ["pareto", c.raw("- name: tiny\n- search_space: space.yaml\n")]


@case("python-tag", "{study}", "python/object/apply:os.system")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("name: !!python/object/apply:os.system ['touch pwned']\n")]


@case("custom-tag", "{study}", "'!include'")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("name: tiny\nsearch_space: !include space.yaml\n")]


@case("duplicate-key", "{study}", "key 'train' appears twice")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("search_space: space.yaml\ntrain: {epochs: 1}\ntrain: {epochs: 2}\n")]


@case("not-utf8", "{study}", "not UTF-8")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw(b"name: caf\xe9\nsearch_space: space.yaml\n")]


@case("config-malformed-json", "--config", "invalid YAML")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", '{"depth": 2,']


@case("config-list", "--config", "config=[1, 2]")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", "[1, 2]"]


@case("config-empty", "--config", "config=None")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", ""]


@case("config-file-missing", "--config", "missing.yaml", "file not found")
def _(c: Ctx) -> list[str]:
    return ["evaluate", c.study(), "--config", "@missing.yaml"]


# ---- alias bombs and the size limits ---------------------------------------------------------
@case("alias-bomb-dataset", "{study}", "YAML refused", "10000")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw(f"search_space: space.yaml\n{_bomb_yaml('dataset')}")]


@case("alias-bomb-config", "--config", "YAML refused")
def _(c: Ctx) -> list[str]:
    refs = ", ".join(BOMB)
    return ["evaluate", c.study(), "--config",
            f'{{"x": [{refs}], "depth": *i, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1}}']


@case("nested-40", "{study}", "YAML refused", "deeper than 32")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("search_space: space.yaml\ntrain: " + "[" * 40 + "]" * 40 + "\n")]


@case("nodes-20000", "{study}", "YAML refused", "more than 10000")
def _(c: Ctx) -> list[str]:
    return ["search", c.raw("search_space: space.yaml\nsearch: {seed_configs: ["
                            + ", ".join(["1"] * 20000) + "]}\n")]


@case("recursive-alias", "{study}", "YAML refused", "refers to itself")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("search_space: space.yaml\ntrain: &t {epochs: *t}\n")]


@case("long-value", "{study}", "train.epochs='xxxx", "...")
def _(c: Ctx) -> list[str]:
    return ["train", c.study(train={"epochs": "x" * 50_000})]


@case("huge-integer", "{study}", "invalid YAML", "digits")
def _(c: Ctx) -> list[str]:
    return ["train", c.raw("search_space: space.yaml\nseed: " + "7" * 6000 + "\n")]


# ---- names -----------------------------------------------------------------------------------
study_case("name-dotdot", "train", {"name": ".."}, "name='..'")
study_case("name-slash", "train", {"name": "a/b"}, "name='a/b'")
study_case("name-newline", "train", {"name": "bad\nname"}, "name='bad\\nname'")
study_case("study-name-dotdot", "search", {"search": {"study_name": ".."}},
           "search.study_name='..'")


# ---- missing, empty and corrupt datasets -----------------------------------------------------
@case("dataset-missing", "{study}", "dataset.root", "folder not found", "nowhere")
def _(c: Ctx) -> list[str]:
    return ["train", c.folder_study(c.root / "elsewhere" / "nowhere")]


@case("dataset-empty", "{study}", "dataset.root", "no class folders", "images")
def _(c: Ctx) -> list[str]:
    root = c.root / "elsewhere" / "images"
    root.mkdir(parents=True)
    return ["train", c.folder_study(root)]


@case("dataset-root-is-file", "{study}", "dataset.root", "is not a folder", "data.zip")
def _(c: Ctx) -> list[str]:
    (c.root / "elsewhere").mkdir(parents=True)
    (c.root / "elsewhere" / "data.zip").write_bytes(b"PK")
    return ["train", c.folder_study(c.root / "elsewhere" / "data.zip")]


@case("class-too-few", "{study}", "dataset.root", "class 'b'", "has 2 images")
def _(c: Ctx) -> list[str]:
    return ["train", c.folder_study(c.images({"a": 8, "b": 2}))]


@case("unicode-class-too-few", "{study}", "dataset.root", "class 'défaut ✓ 1'", "has 3 images")
def _(c: Ctx) -> list[str]:
    return ["train", c.folder_study(c.images({"bon état": 8, "défaut ✓ 1": 3}))]


@case("newline-class-name", "{study}", "dataset.root", "has 1 images")
def _(c: Ctx) -> list[str]:
    return ["train", c.folder_study(c.images({"ok": 8, "two\nlines": 1}))]


@case("corrupt-image", "{study}", "dataset.root", "cannot read image", "05.png")
def _(c: Ctx) -> list[str]:
    root = c.images({"a": 8, "b": 8})
    (root / "b" / "05.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return ["train", c.folder_study(root)]


@case("truncated-16bit", "{study}", "dataset.root", "cannot read image", "03.png")
def _(c: Ctx) -> list[str]:
    root = c.images({"a": 8, "b": 8}, mode="I;16", size=16)
    png = (root / "a" / "03.png").read_bytes()
    (root / "a" / "03.png").write_bytes(png[: len(png) // 2])
    return ["train", c.folder_study(root)]


@case("mixed-modes-one-corrupt", "{study}", "dataset.root", "cannot read image", "rgba.png")
def _(c: Ctx) -> list[str]:
    root = c.images({"a": 8, "b": 8}, mode="RGBA")
    c.images({"a": 2}, mode="I;16", name="images")  # 16-bit files beside the RGBA ones
    (root / "b" / "rgba.png").write_bytes((root / "b" / "00.png").read_bytes()[:40])
    return ["train", c.folder_study(root)]


@case("decompression-bomb", "{study}", "dataset.root", "bomb.png", "decompression bomb")
def _(c: Ctx) -> list[str]:
    root = c.images({"a": 8, "b": 8})
    (root / "b" / "bomb.png").write_bytes(_png_header(60_000, 60_000))
    return ["train", c.folder_study(root)]


@case("symlink-loop-root", "{study}", "dataset.root", "loop")
def _(c: Ctx) -> list[str]:
    (c.root / "elsewhere").mkdir(parents=True)
    loop = c.root / "elsewhere" / "loop"
    loop.symlink_to(loop)
    return ["train", c.folder_study(loop)]


@case("symlink-loop-class", "{study}", "dataset.root", "class 'b'", "has 0 images")
def _(c: Ctx) -> list[str]:
    root = c.images({"a": 8})
    (root / "b").mkdir()
    (root / "b" / "self").symlink_to(root / "b")  # os.walk does not follow it
    return ["train", c.folder_study(root)]


@case("synthetic-into-user-folder", "{study}", "dataset.root", "mine", "not written by jointopt")
def _(c: Ctx) -> list[str]:
    mine = c.root / "elsewhere" / "mine"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    return ["train", c.study(dataset={"root": str(mine)})]


# ---- checkpoint against study ----------------------------------------------------------------
@case("ckpt-channels", "{study}", "dataset.channels=3", "1 input channel")
def _(c: Ctx) -> list[str]:
    path = c.study(dataset={"channels": 3})
    c.checkpoint(channels=1)
    return ["summary", path]


@case("ckpt-classes", "{study}", "dataset.root", "holds 5 classes", "has 6")
def _(c: Ctx) -> list[str]:
    path = c.folder_study(c.images({f"c{i}": 8 for i in range(5)}))
    c.checkpoint(classes=6)
    return ["search", path]


@case("ckpt-embed-dim", "space.yaml", "supernet.embed_dim=48", "embed_dim=32")
def _(c: Ctx) -> list[str]:
    path = c.study(space={"supernet": {"embed_dim": 48}, "choices": {"embed_dim": [16, 48]}})
    c.checkpoint()
    return ["evaluate", path, "--config", '{"depth": 2, "embed_dim": 16, "num_heads": 1, '
            '"mlp_ratio": 1}']


@case("ckpt-image-size", "space.yaml", "supernet.img_size=64", "img_size=32")
def _(c: Ctx) -> list[str]:
    path = c.study(space={"supernet": {"img_size": 64}}, dataset={"image_size": 64})
    c.checkpoint()
    return ["train", path]


@case("ckpt-arch-damaged", "{study}", "supernet.safetensors.json", "damaged")
def _(c: Ctx) -> list[str]:
    path = c.study()
    ckpt = c.checkpoint()
    ckpt.with_name(ckpt.name + ".json").write_text('{"format": ')
    return ["summary", path]


@case("ckpt-weights-damaged", "{study}", "supernet.safetensors", "damaged")
def _(c: Ctx) -> list[str]:
    path = c.study()
    ckpt = c.checkpoint()
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    return ["summary", path]


# ---- storage URLs ----------------------------------------------------------------------------
def storage_case(name: str, command: str, url: str, *expect: str, ckpt: bool = False,
                 env: dict[str, str] | None = None) -> None:
    def setup(c: Ctx) -> list[str]:
        c.env.update(env or {})
        path = c.study(search={"storage": url})
        if ckpt:
            c.checkpoint()
        return [*command.split(), path]

    CASES.append((name, setup, ("{study}", "search.storage=", *expect)))


storage_case("pg-unreachable", "search", "postgresql+psycopg2://u@127.0.0.1:1/db",
             "127.0.0.1:1", "cannot open storage", ckpt=True)
storage_case("pg-plain-scheme", "pareto", "postgresql://u@127.0.0.1:1/db", "127.0.0.1:1",
             "cannot open storage", "Connection refused")
storage_case("wrong-scheme", "pareto", "redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0",
             "cannot open storage")
storage_case("not-a-url", "dashboard", "optuna.db", "'optuna.db'", "cannot open storage")
storage_case("password-userinfo", "pareto", f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:1/db",
             "u:***@127.0.0.1:1")
storage_case("password-query", "report --out r.html",
             f"postgresql://127.0.0.1:1/db?user=u&password={SECRET}", "password=***")
storage_case("password-sslpassword", "export --out ex",
             f"postgresql://u@127.0.0.1:1/db?sslpassword={SECRET}&sslmode=disable",
             "sslpassword=***")
storage_case("env-unset", "pareto", "env:JOINTOPT_CORPUS_UNSET", "env:JOINTOPT_CORPUS_UNSET",
             "is not set")
storage_case("env-password", "search", "env:JOINTOPT_CORPUS_URL", "u:***@127.0.0.1:1",
             ckpt=True, env={"JOINTOPT_CORPUS_URL":
                             f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:1/db"})
storage_case("env-password-query", "dashboard", "env:JOINTOPT_CORPUS_URL", "password=***",
             env={"JOINTOPT_CORPUS_URL": f"postgresql://127.0.0.1:1/db?password={SECRET}"})
storage_case("sqlite-no-folder", "search", "sqlite:////nonexistent/jointopt/optuna.db",
             "/nonexistent/jointopt", "does not exist", ckpt=True)
storage_case("journal-no-folder", "search", "journal:/nonexistent/jointopt/j.log",
             "/nonexistent/jointopt", "does not exist", ckpt=True)


@case("sqlite-not-a-db", "{study}", "search.storage=", "not an SQLite database")
def _(c: Ctx) -> list[str]:
    path = c.study(search={"storage": f"sqlite:///{c.dir / 'notes.txt'}"})
    (c.dir / "notes.txt").write_text("shopping list\n" * 100)
    return ["pareto", path]


# ---- read commands on a study never searched create nothing ----------------------------------
for _cmd in ("pareto", "report --out r.html", "export --out ex", "dashboard"):
    study_case(f"never-searched-{_cmd.split()[0]}", _cmd, {}, "search.storage=",
               "holds no study yet", "jointopt search")
study_case("summary-untrained", "summary", {}, "supernet not trained yet", "jointopt train")


@case("study-name-not-in-storage", "{study}", "search.study_name='other'", "no such study")
def _(c: Ctx) -> list[str]:
    c.study()
    c.sqlite_study("tiny")
    return ["pareto", c.study(search={"study_name": "other"})]


# ---- command-line options: busy port, output paths -------------------------------------------
@case("dashboard-busy-port", "--port=", "Address already in use")
def _(c: Ctx) -> list[str]:
    c.study()
    c.sqlite_study()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _OPEN.append(sock)  # kept listening until the command ran
    return ["dashboard", str(c.path), "--port", str(sock.getsockname()[1])]


@case("export-out-is-file", "--out=", "notes.txt", "not a folder")
def _(c: Ctx) -> list[str]:
    path = c.study()
    (c.root / "cwd" / "notes.txt").write_text("keep me")
    return ["export", path, "--out", "notes.txt"]


@case("report-out-is-folder", "--out=", "somewhere", "is a folder")
def _(c: Ctx) -> list[str]:
    (c.root / "cwd" / "somewhere").mkdir()
    return ["report", c.study(), "--out", "somewhere"]


@case("dashboard-port-range", "--port", "99999")
def _(c: Ctx) -> list[str]:
    return ["dashboard", c.study(), "--port", "99999"]


@case("search-n-trials-0", "--n-trials", "0")
def _(c: Ctx) -> list[str]:
    return ["search", c.study(), "--n-trials", "0"]


@case("synth-per-class-0", "--per-class=0")
def _(c: Ctx) -> list[str]:
    return ["data", "synth", "--out", "data", "--per-class", "0"]


@case("synth-out-is-file", "--out=", "notes.txt", "not a folder")
def _(c: Ctx) -> list[str]:
    (c.root / "cwd" / "notes.txt").write_text("keep me")
    return ["data", "synth", "--out", "notes.txt"]


@case("study-file-missing", "nope.yaml", "file not found")
def _(c: Ctx) -> list[str]:
    return ["train", str(c.root / "parent" / "nope.yaml")]


_OPEN: list[socket.socket] = []


def close_sockets() -> None:
    """Close the sockets a case holds open while its command runs (the busy port)."""
    while _OPEN:
        _OPEN.pop().close()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (PIL refuses it before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def snapshot(*roots: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``roots``: (mode, size, content hash); links not followed."""
    out: dict[str, tuple[int, int, str]] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            out[str(root)] = (0, 0, "absent")
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                st = p.lstat()
                digest = ""
                if p.is_file() and not p.is_symlink():
                    digest = hashlib.sha1(p.read_bytes()).hexdigest()
                out[str(p)] = (st.st_mode, st.st_size, digest)
            out[str(dirpath)] = (os.lstat(dirpath).st_mode, 0, "dir")
    return out
