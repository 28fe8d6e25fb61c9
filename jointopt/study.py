"""Studies: one YAML file naming the data, the supernet, the search space and the search.

Every section parses into a frozen dataclass. Unknown keys, wrong types and impossible values
raise :class:`~jointopt.errors.UserError` naming the file, the key and the value. Relative paths
resolve against the YAML file's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jointopt._yaml import check_keys, load_yaml, want
from jointopt.errors import UserError, clip, field_error
from jointopt.space import SearchSpace

if TYPE_CHECKING:
    from jointopt.data import DatasetSplits

__all__ = ["Study", "DatasetSpec", "TrainSpec", "EvalSpec", "SAFE_NAME"]

#: A study name: also a folder name, so a safe path component.
SAFE_NAME = re.compile(r"\w[\w.-]{0,99}")


def _section(cls: type, data: Any, *, source: str, prefix: str,
             paths: tuple[str, ...] = (), base: Path | None = None) -> Any:
    """Parse a mapping into dataclass ``cls``: keys checked, types coerced, paths resolved."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise field_error(source, prefix, data, "must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, source=source, prefix=prefix)
    kw: dict[str, Any] = {}
    for key, value in data.items():
        f = fields[key]
        name = f"{prefix}.{key}"
        if value is None and "None" in str(f.type):
            kw[key] = None  # an optional setting written out as null
            continue
        if key in paths:
            if value is None:
                kw[key] = None
                continue
            p = Path(want(value, str, source, name)).expanduser()
            kw[key] = p if p.is_absolute() or base is None else (base / p)
            continue
        typ = {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type).split(" ")[0])
        if typ is not None:
            kw[key] = want(value, typ, source, name)
        else:
            kw[key] = value
    obj = cls(**kw)
    check = getattr(obj, "check", None)
    if check is not None:
        check(source, prefix)
    return obj


def _with_driver(url: str) -> str:
    """Name the PostgreSQL driver that is installed: for a plain ``postgresql://`` URL
    SQLAlchemy 2 picks psycopg 3, which jointopt does not depend on; psycopg2 it does."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


def _positive(source: str, prefix: str, obj: Any, *names: str, allow_zero: bool = False) -> None:
    for n in names:
        v = getattr(obj, n)
        if v < 0 or (v == 0 and not allow_zero):
            raise field_error(source, f"{prefix}.{n}", v,
                              "must be >= 0" if allow_zero else "must be > 0")


@dataclass(frozen=True)
class DatasetSpec:
    """Where the images come from.

    ``kind: synthetic`` generates the IC-package X-ray set into ``root`` when it is missing;
    ``kind: folder`` reads any ImageFolder tree at ``root``. A folder root holding ``train/`` and
    ``test/`` keeps that official split; validation then comes out of ``train/``, grouped by
    the board its file names carry (``group_pattern``, see jointopt.data.folder.file_groups).
    ``max_per_class`` caps each class (seeded by ``split_seed``) for quick runs only.
    """

    kind: str = "synthetic"
    root: Path | None = None
    image_size: int = 64
    channels: int = 1
    per_class: int = 400
    seed: int = 0
    split_seed: int = 0
    max_per_class: int | None = None
    group_pattern: str = "auto"

    def check(self, source: str, prefix: str) -> None:
        if self.kind not in ("synthetic", "folder"):
            raise field_error(source, f"{prefix}.kind", self.kind, "must be synthetic or folder")
        if self.kind == "folder" and self.root is None:
            raise field_error(source, f"{prefix}.root", None, "is required for kind: folder")
        if self.channels not in (1, 3):
            raise field_error(source, f"{prefix}.channels", self.channels, "must be 1 or 3")
        _positive(source, prefix, self, "image_size", "per_class")
        if self.max_per_class is not None:
            _positive(source, prefix, self, "max_per_class")
        if self.group_pattern not in ("auto", "none"):
            import re

            try:
                re.compile(self.group_pattern)
            except re.error as e:
                raise field_error(source, f"{prefix}.group_pattern", self.group_pattern,
                                  f"not a regular expression ({e})") from None


@dataclass(frozen=True)
class TrainSpec:
    """Supernet training (AutoFormer's single-path sampling with the sandwich rule)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    sandwich: bool = True
    distill: bool = True
    # In-place distillation from an untrained teacher held the small subnets back in short
    # runs (they learned from its random predictions); before this epoch all use the labels.
    distill_start: int = 0
    shift: int = 4
    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    threads: int = 0
    bf16: bool = True  # bf16 autocast: about 2x faster on CPUs with AVX512-BF16 or AMX
    # A model trained by `jointopt train-fixed` (e.g. "timm:resnet10t") that every subnet of
    # the sandwich also learns from (DeiT, arXiv 2012.12877); its weights are read from
    # <output>/fixed/ (jointopt.baselines.fixed_weights_path), or a path to such a
    # .safetensors file, relative to the study file.
    teacher: str | None = None
    teacher_mode: str = "soft"  # soft: KL to its softened logits; hard: CE to its argmax
    teacher_weight: float = 0.5  # loss = (1 - w) * labels or in-place loss + w * teacher loss
    teacher_temperature: float = 1.0  # soft mode only
    # Opt-in stronger augmentation (jointopt.augment): random resized crops keeping this share
    # of the area (e.g. [0.8, 1.0], a range that keeps a centred defect), and mixup / cutmix
    # with these Beta alphas (0 = off). Labels, in-place and teacher targets all see the mix.
    rrc_scale: tuple[float, float] | None = None
    mixup: float = 0.0
    cutmix: float = 0.0

    def check(self, source: str, prefix: str) -> None:
        _positive(source, prefix, self, "epochs", "batch_size", "lr")
        _positive(source, prefix, self, "warmup_epochs", "shift", "weight_decay", "min_lr",
                  "threads", "distill_start", allow_zero=True)
        if not 0 <= self.label_smoothing < 1:
            raise field_error(source, f"{prefix}.label_smoothing", self.label_smoothing,
                              "must be in [0, 1)")
        if self.teacher is not None and not self.teacher.strip():
            raise field_error(source, f"{prefix}.teacher", self.teacher,
                              "must name a model trained by jointopt train-fixed")
        if self.teacher_mode not in ("soft", "hard"):
            raise field_error(source, f"{prefix}.teacher_mode", self.teacher_mode,
                              "must be soft or hard")
        if not 0 < self.teacher_weight <= 1:
            raise field_error(source, f"{prefix}.teacher_weight", self.teacher_weight,
                              "must be in (0, 1]")
        _positive(source, prefix, self, "teacher_temperature")
        _positive(source, prefix, self, "mixup", "cutmix", allow_zero=True)
        if self.rrc_scale is not None:
            r = self.rrc_scale
            if (not isinstance(r, list | tuple) or len(r) != 2
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in r)
                    or not 0 < r[0] <= r[1] <= 1):
                raise field_error(source, f"{prefix}.rrc_scale", r,
                                  "must be [low, high] with 0 < low <= high <= 1")
            object.__setattr__(self, "rrc_scale", (float(r[0]), float(r[1])))


@dataclass(frozen=True)
class EvalSpec:
    """How one config is evaluated and measured."""

    io_bits: int = 8
    calib_batches: int = 4
    batch_size: int = 64
    latency_runs: int = 20
    warmup_runs: int = 5
    threads: int = 0
    max_foreign_load: float = 0.25  # share of the timed cores other processes may use; 1 = off
    proportional_attention: bool = True
    # Score search trials on a seeded, stratified subset of the validation split with at most
    # this many images per class (0 = the whole split): for large sets such as DeepPCB.
    val_per_class: int = 0
    runtime: str = "openvino"  # the runtime that executes the deployed model (jointopt.runtimes)
    latency: str = "measured"  # a registered latency cost model; measured: timed on `runtime`
    energy: str = "auto"  # rapl where readable, else the horowitz45 model

    def check(self, source: str, prefix: str) -> None:
        _positive(source, prefix, self, "calib_batches", "batch_size", "latency_runs")
        _positive(source, prefix, self, "warmup_runs", "threads", "val_per_class",
                  allow_zero=True)
        if not 0 <= self.max_foreign_load <= 1:
            raise field_error(source, f"{prefix}.max_foreign_load", self.max_foreign_load,
                              "must be in [0, 1] (1 turns the check off)")
        from jointopt.runtimes import runtime_names

        if self.runtime not in runtime_names():
            raise field_error(source, f"{prefix}.runtime", self.runtime,
                              f"unknown runtime (registered: {', '.join(runtime_names())})")
        if self.io_bits not in (32, 16, 8, 6, 4, 3, 2):
            raise field_error(source, f"{prefix}.io_bits", self.io_bits,
                              "must be a valid bit-width")


@dataclass(frozen=True)
class Study:
    """A parsed study file. Build it with :meth:`from_yaml`."""

    name: str
    path: Path
    output: Path
    seed: int
    dataset: DatasetSpec
    space_path: Path
    train: TrainSpec = field(default_factory=TrainSpec)
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    search: Any = None  # jointopt.controllers.spec.SearchSpec

    TOP_KEYS = ("name", "output", "seed", "dataset", "search_space", "train", "evaluate",
                "search")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        path = Path(path)
        data = load_yaml(path)
        src, base = str(path), path.resolve().parent
        check_keys(data, cls.TOP_KEYS, source=src, prefix="")
        name = want(data.get("name", path.stem), str, src, "name")
        if not SAFE_NAME.fullmatch(name):
            # The name is a folder name (the default output is ../runs/<name>): ".." or "a/b"
            # would put the study's files somewhere else entirely.
            raise field_error(src, "name", name, "must be a file name: letters, digits, '_', "
                              "'.' and '-', not starting with '.' or '-', at most 100")
        out = Path(want(data.get("output", f"../runs/{name}"), str, src, "output"))
        out = out if out.is_absolute() else base / out
        if "search_space" not in data:
            raise field_error(src, "search_space", None, "is required (a search space YAML)")
        space_path = Path(want(data["search_space"], str, src, "search_space"))
        space_path = space_path if space_path.is_absolute() else base / space_path
        dataset = _section(DatasetSpec, data.get("dataset"), source=src, prefix="dataset",
                           paths=("root",), base=base)
        from jointopt.controllers.spec import parse_search

        seed = want(data.get("seed", 0), int, src, "seed")
        study = cls(
            search=parse_search(data.get("search"), source=src, default_name=name, seed=seed),
            name=name, path=path, output=out.resolve(), seed=seed,
            dataset=dataset, space_path=space_path,
            train=_section(TrainSpec, data.get("train"), source=src, prefix="train"),
            evaluation=_section(EvalSpec, data.get("evaluate"), source=src, prefix="evaluate"),
        )
        space = study.space  # parse now so a bad space fails before any work
        from jointopt.controllers.spec import check_sampler

        check_sampler(study.search, space, src)
        from jointopt.space import JointConfig

        for i, c in enumerate(study.search.seed_configs):
            space.validate(JointConfig.from_dict(c), source=f"{src}: search.seed_configs[{i}]")
        if space.supernet.img_size != dataset.image_size:
            raise field_error(src, "dataset.image_size", dataset.image_size,
                              f"must equal the search space's supernet.img_size "
                              f"{space.supernet.img_size} ({space_path})")
        return study

    # ---- derived ------------------------------------------------------------------------
    @cached_property
    def space(self) -> SearchSpace:
        if not self.space_path.is_file():
            raise field_error(self.path, "search_space", str(self.space_path), "file not found")
        return SearchSpace.from_yaml(self.space_path)

    @property
    def data_root(self) -> Path:
        if self.dataset.root is not None:
            try:
                return self.dataset.root.resolve()
            except (OSError, RuntimeError):  # a symlink loop: the loader names it
                return self.dataset.root.absolute()
        return self.output / "data"

    @property
    def storage_url(self) -> str:
        """The Optuna storage: the study's ``search.storage`` or a SQLite file in ``output``."""
        url = self.search.storage
        if url and url.startswith("env:"):
            # Credentials stay out of committed YAML: the URL comes from the environment.
            var = url[4:]
            if not os.environ.get(var):
                raise field_error(self.path, "search.storage", url,
                                  f"environment variable {var} is not set")
            return _with_driver(os.environ[var])
        if url:
            return _with_driver(str(url))
        return f"sqlite:///{self.output / 'optuna.db'}"

    @property
    def checkpoint(self) -> Path:
        return self.output / "supernet.safetensors"

    @property
    def train_state(self) -> Path:
        return self.output / "train_state.pt"

    def data(self) -> DatasetSplits:
        """The dataset splits (generated first for a synthetic dataset)."""
        from jointopt.data import load_study_data

        return load_study_data(self)

    def load_supernet(self):  # type: ignore[no-untyped-def]
        """The trained supernet, or a clear error naming the command that trains it."""
        from jointopt.supernet import ViTSupernet

        if not self.checkpoint.is_file():
            raise UserError(f"{self.path}: supernet not trained yet ({self.checkpoint} missing); "
                            f"run: jointopt train {self.path}")
        self.check_checkpoint()
        try:
            return ViTSupernet.load(self.checkpoint)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001  (safetensors/torch errors: a damaged file)
            raise UserError(f"{self.path}: cannot load the supernet {self.checkpoint}: "
                            f"{clip(str(e) or type(e).__name__)}; delete it and run: "
                            f"jointopt train {self.path}") from None

    def check_checkpoint(self) -> None:
        """The trained supernet (its ``.json`` architecture) agrees with this study: input
        channels, classes, image size and the search space's supernet. Checked before any work,
        since a mismatch otherwise surfaces mid-run as a tensor shape error. No-op when there
        is no checkpoint yet."""
        arch_path = self.checkpoint.with_name(self.checkpoint.name + ".json")
        if not arch_path.is_file():
            return
        try:
            arch = json.loads(arch_path.read_text())
            ckpt_shape = dict(arch["shape"])
            in_chans, classes = int(arch["in_chans"]), int(arch["num_classes"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{self.path}: supernet architecture file {arch_path} is damaged "
                            f"({clip(str(e) or type(e).__name__, 80)}); delete it and run: "
                            f"jointopt train {self.path}") from None
        try:
            from safetensors import safe_open

            with safe_open(str(self.checkpoint), framework="pt") as f:  # the header only
                f.keys()
        except Exception as e:  # noqa: BLE001  (truncated or not a safetensors file)
            raise UserError(f"{self.path}: supernet weights {self.checkpoint} are damaged "
                            f"({clip(str(e) or type(e).__name__, 80)}); delete them and run: "
                            f"jointopt train {self.path}") from None
        ckpt = f"the trained supernet {self.checkpoint} has"
        if in_chans != self.dataset.channels:
            raise field_error(self.path, "dataset.channels", self.dataset.channels,
                              f"{ckpt} {in_chans} input channel(s); train a new supernet "
                              "(another output folder) or set channels to match")
        n = self._class_count()
        if n is not None and n != classes:
            raise field_error(self.path, "dataset.root", str(self.data_root),
                              f"holds {n} classes, {ckpt} {classes}; train a new supernet "
                              "(another output folder) for this dataset")
        space = self.space.supernet
        for key, value in dataclasses.asdict(space).items():
            if key in ckpt_shape and ckpt_shape[key] != value:
                raise field_error(self.space_path, f"supernet.{key}", value,
                                  f"{ckpt} {key}={ckpt_shape[key]!r}; the search space must "
                                  "describe the trained supernet")

    def _class_count(self) -> int | None:
        """Classes of the study's dataset without loading it (None when not known yet)."""
        if self.dataset.kind == "synthetic":
            from jointopt.data.synth import CLASSES

            return len(CLASSES)
        try:
            return sum(1 for p in self.data_root.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return None  # the data loader names the problem
