"""Studies: one YAML file naming the data, the supernet, the search space and the search.

Every section is a frozen dataclass read by the one schema of :mod:`jointopt.schema`, as are
the search space and config files. Unknown keys, wrong types and impossible values raise
:class:`~jointopt.errors.UserError` naming the file, the key and the value. Relative paths
resolve against the YAML file's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jointopt.errors import UserError, clip, field_error
from jointopt.schema import Where, parse, setting, want
from jointopt.space import SearchSpace
from jointopt.yamlio import load_yaml

if TYPE_CHECKING:
    from jointopt.data import DatasetSplits

__all__ = ["Study", "DatasetSpec", "TrainSpec", "EvalSpec", "SAFE_NAME"]

#: A study name: also a folder name, so a safe path component.
SAFE_NAME = re.compile(r"\w[\w.-]{0,99}")


def _with_driver(url: str) -> str:
    """Name the PostgreSQL driver that is installed: for a plain ``postgresql://`` URL
    SQLAlchemy 2 picks psycopg 3, which jointopt does not depend on; psycopg2 it does."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


@dataclass(frozen=True)
class DatasetSpec:
    """Where the images come from.

    ``kind: synthetic`` generates the IC-package X-ray set into ``root`` when it is missing;
    ``kind: folder`` reads any ImageFolder tree at ``root``. A folder root holding ``train/`` and
    ``test/`` keeps that official split; validation then comes out of ``train/``, grouped by
    the board its file names carry (``group_pattern``, see jointopt.data.folder.file_groups).
    ``max_per_class`` caps each class (seeded by ``split_seed``) for quick runs only.
    """

    kind: str = setting("synthetic", choices=("synthetic", "folder"))
    root: Path | None = setting(None, path=True)
    image_size: int = setting(64, gt=0)
    channels: int = setting(1, choices=(1, 3))
    per_class: int = setting(400, gt=0)
    seed: int = 0
    split_seed: int = 0
    max_per_class: int | None = setting(None, gt=0)
    group_pattern: str = "auto"

    def check(self, source: str, prefix: str) -> None:
        if self.kind == "folder" and self.root is None:
            raise field_error(source, f"{prefix}.root", None, "is required for kind: folder")
        if self.group_pattern not in ("auto", "none"):
            try:
                re.compile(self.group_pattern)
            except re.error as e:
                raise field_error(source, f"{prefix}.group_pattern", self.group_pattern,
                                  f"not a regular expression ({e})") from None


@dataclass(frozen=True)
class TrainSpec:
    """Supernet training (AutoFormer's single-path sampling with the sandwich rule)."""

    epochs: int = setting(20, gt=0)
    batch_size: int = setting(64, gt=0)
    lr: float = setting(1e-3, gt=0)
    min_lr: float = setting(1e-5, ge=0)
    weight_decay: float = setting(0.05, ge=0)
    warmup_epochs: int = setting(2, ge=0)
    label_smoothing: float = setting(0.1, ge=0, lt=1, why="must be in [0, 1)")
    sandwich: bool = True
    distill: bool = True
    # In-place distillation from an untrained teacher held the small subnets back in short
    # runs (they learned from its random predictions); before this epoch all use the labels.
    distill_start: int = setting(0, ge=0)
    shift: int = setting(4, ge=0)
    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    threads: int = setting(0, ge=0)
    bf16: bool = True  # bf16 autocast: about 2x faster on CPUs with AVX512-BF16 or AMX
    # Where the training steps run: auto = the first CUDA GPU when torch sees one, else the
    # CPU. Data loading and augmentation stay on the CPU; checkpoints are written as CPU
    # tensors, so a run may be resumed, searched and exported on a machine without a GPU.
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    # A model trained by `jointopt train-fixed` (e.g. "timm:resnet10t") that every subnet of
    # the sandwich also learns from (DeiT, arXiv 2012.12877); its weights are read from
    # <output>/fixed/ (jointopt.baselines.fixed_weights_path), or a path to such a
    # .safetensors file, relative to the study file.
    teacher: str | None = None
    # soft: KL to its softened logits; hard: CE to its argmax
    teacher_mode: str = setting("soft", choices=("soft", "hard"))
    # loss = (1 - w) * labels or in-place loss + w * teacher loss
    teacher_weight: float = setting(0.5, gt=0, le=1, why="must be in (0, 1]")
    teacher_temperature: float = setting(1.0, gt=0)  # soft mode only
    # Opt-in stronger augmentation (jointopt.augment): random resized crops keeping this share
    # of the area (e.g. [0.8, 1.0], a range that keeps a centred defect), and mixup / cutmix
    # with these Beta alphas (0 = off). Labels, in-place and teacher targets all see the mix.
    rrc_scale: tuple[float, float] | None = setting(
        None, gt=0, le=1, why="must be [low, high] with 0 < low <= high <= 1")
    mixup: float = setting(0.0, ge=0)
    cutmix: float = setting(0.0, ge=0)

    def check(self, source: str, prefix: str) -> None:
        if self.teacher is not None and not self.teacher.strip():
            raise field_error(source, f"{prefix}.teacher", self.teacher,
                              "must name a model trained by jointopt train-fixed")
        if self.rrc_scale is not None and self.rrc_scale[0] > self.rrc_scale[1]:
            raise field_error(source, f"{prefix}.rrc_scale", list(self.rrc_scale),
                              "must be [low, high] with 0 < low <= high <= 1")


@dataclass(frozen=True)
class EvalSpec:
    """How one config is evaluated and measured."""

    io_bits: int = setting(8, choices=(32, 16, 8, 6, 4, 3, 2), why="must be a valid bit-width")
    calib_batches: int = setting(4, gt=0)
    batch_size: int = setting(64, gt=0)
    latency_runs: int = setting(20, gt=0)
    warmup_runs: int = setting(5, ge=0)
    threads: int = setting(0, ge=0)
    # share of the timed cores other processes may use; 1 = off
    max_foreign_load: float = setting(0.25, ge=0, le=1,
                                      why="must be in [0, 1] (1 turns the check off)")
    proportional_attention: bool = True
    # Score search trials on a seeded, stratified subset of the validation split with at most
    # this many images per class (0 = the whole split): for large sets such as DeepPCB.
    val_per_class: int = setting(0, ge=0)
    runtime: str = "openvino"  # the runtime that executes the deployed model (jointopt.runtimes)
    latency: str = "measured"  # a registered latency cost model; measured: timed on `runtime`
    energy: str = "auto"  # rapl where readable, else the horowitz45 model

    def check(self, source: str, prefix: str) -> None:
        from jointopt.runtimes import runtime_names

        if self.runtime not in runtime_names():
            raise field_error(source, f"{prefix}.runtime", self.runtime,
                              f"unknown runtime (registered: {', '.join(runtime_names())})")


def _study_name(value: Any, where: Where) -> str:
    name: str = want(value, str, where.source, where.key)
    if not SAFE_NAME.fullmatch(name):
        # The name is a folder name (the default output is ../runs/<name>): ".." or "a/b"
        # would put the study's files somewhere else entirely.
        raise where.error(name, "must be a file name: letters, digits, '_', '.' and '-', not "
                          "starting with '.' or '-', at most 100")
    return name


def _search_section(value: Any, where: Where) -> Any:
    from jointopt.controllers.spec import SearchSpec  # imports the sampler registry

    return parse(SearchSpec, value, where=where)


@dataclass(frozen=True, kw_only=True)
class Study:
    """A parsed study file. Build it with :meth:`from_yaml`."""

    path: Path = setting(yaml=False)
    name: str = setting(parse=_study_name)  # default: the file's stem
    output: Path = setting(path=True)  # default: ../runs/<name>
    seed: int = 0
    dataset: DatasetSpec = setting(factory=DatasetSpec)
    space_path: Path = setting(key="search_space", path=True,
                               missing="is required (a search space YAML)")
    train: TrainSpec = setting(factory=TrainSpec)
    evaluation: EvalSpec = setting(key="evaluate", factory=EvalSpec)
    # jointopt.controllers.spec.SearchSpec (imported when a study is read, not with this module)
    search: Any = setting(None, parse=_search_section)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        path = Path(path)
        data = load_yaml(path)
        src = str(path)
        raw = {"name": path.stem, "search": None, **data}
        if isinstance(raw["name"], str):
            raw.setdefault("output", f"../runs/{raw['name']}")
        study = parse(cls, raw, where=Where(src, "", path.resolve().parent), path=path)
        search = study.search
        seed = study.seed if search.sampler.seed is None else search.sampler.seed
        study = dataclasses.replace(
            study, output=study.output.resolve(),
            search=dataclasses.replace(search, study_name=search.study_name or study.name,
                                       seed=seed))
        space = study.space  # parse now so a bad space fails before any work
        from jointopt.controllers.spec import check_sampler

        check_sampler(study.search, space, src)
        from jointopt.space import JointConfig

        for i, c in enumerate(study.search.seed_configs):
            space.validate(JointConfig.from_dict(c), source=f"{src}: search.seed_configs[{i}]")
        if space.supernet.img_size != study.dataset.image_size:
            raise field_error(src, "dataset.image_size", study.dataset.image_size,
                              f"must equal the search space's supernet.img_size "
                              f"{space.supernet.img_size} ({study.space_path})")
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
        from jointopt.data.folder import class_names

        try:
            return len(class_names(self.data_root))
        except UserError:
            return None  # the data loader names the problem
