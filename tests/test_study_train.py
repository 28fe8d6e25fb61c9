from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_cli, write_tiny_study

from jointopt import Study
from jointopt.errors import UserError
from jointopt.train import train_supernet


def test_quickstart_and_wm811k_studies_parse() -> None:
    q = Study.from_yaml(ROOT / "studies" / "quickstart.yaml")
    assert q.space.max_config.embed_dim == 192 and q.dataset.kind == "synthetic"
    w = Study.from_yaml(ROOT / "studies" / "wm811k.yaml")
    # relative paths resolve against the YAML file's folder
    assert w.data_root == (ROOT.parent / "shared" / "data" / "wm811k" / "images").resolve()
    assert w.dataset.channels == 3


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"train": {"epochs": "many"}}, "train.epochs='many'"),
        ({"train": {"epochs": 0}}, "train.epochs=0"),
        ({"dataset": {"kind": "lmdb"}}, "dataset.kind='lmdb'"),
        ({"dataset": {"image_size": 48}}, "dataset.image_size=48"),
        ({"evaluate": {"max_foreign_load": 1.5}}, "evaluate.max_foreign_load=1.5"),
        ({"train": {"device": "tpu"}}, "train.device='tpu'"),
        ({"search_space": "nope.yaml"}, "nope.yaml"),
    ],
)
def test_study_errors_name_file_key_value(tmp_path: Path, patch: dict, needle: str) -> None:
    path = write_tiny_study(tmp_path, **patch)
    with pytest.raises(UserError) as info:
        Study.from_yaml(path)
    msg = str(info.value)
    assert needle in msg and "study.yaml" in msg and "\n" not in msg


def test_load_supernet_before_training_is_a_clear_error(tiny_study_path: Path) -> None:
    with pytest.raises(UserError, match="not trained yet.*jointopt train"):
        Study.from_yaml(tiny_study_path).load_supernet()


def test_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    study = Study.from_yaml(write_tiny_study(a))
    net_full, res = train_supernet(study, progress=False)
    assert res.epochs_run == 2 and len(res.history) == 2
    # Same seed, interrupted after one epoch, then resumed: identical weights.
    b = tmp_path / "b"
    b.mkdir()
    one = write_tiny_study(b, train={"epochs": 1, "batch_size": 16, "warmup_epochs": 1,
                                     "bf16": False})
    train_supernet(Study.from_yaml(one), progress=False)
    two = write_tiny_study(b)  # same study, now asking for 2 epochs
    net_resumed, res2 = train_supernet(Study.from_yaml(two), progress=False)
    assert res2.epochs_run == 1
    sa, sb = net_full.state_dict(), net_resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # A finished run started again trains nothing more.
    _, res3 = train_supernet(Study.from_yaml(two), progress=False)
    assert res3.epochs_run == 0


def test_train_device_cpu_and_a_missing_gpu(tmp_path: Path) -> None:
    """``train.device: cpu`` trains what ``auto`` trains on a machine without a GPU; asking for
    ``cuda`` there is one clear line, exit 2, with nothing written."""
    from jointopt.train import train_device

    spec = {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "bf16": False}
    nets = []
    for device in ("cpu", "auto"):
        d = tmp_path / device
        d.mkdir()
        study = Study.from_yaml(write_tiny_study(d, train={**spec, "device": device}))
        nets.append(train_supernet(study, progress=False)[0].state_dict())
        assert all(v.device.type == "cpu" for v in nets[-1].values())
    if torch.cuda.is_available():
        assert train_device(study.train).type == "cuda"
        pytest.skip("a CUDA GPU is present: the missing-GPU error cannot be shown here")
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
    d = tmp_path / "cuda"
    d.mkdir()
    path = write_tiny_study(d, train={**spec, "device": "cuda"})
    r = run_cli("train", str(path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "train.device='cuda'" in r.stderr
    assert not (d / "out" / "supernet.safetensors").exists()


def test_cli_train_prints_summary(tiny_study_path: Path) -> None:
    r = run_cli("train", str(tiny_study_path), "--quiet", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "largest" in r.stdout and "smallest" in r.stdout and "MACs" in r.stdout
    assert (tiny_study_path.parent / "out" / "supernet.safetensors").is_file()


def test_cli_bad_study_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, train={"lr": -1})
    r = run_cli("train", str(path), timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "train.lr=-1" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_cli_data_synth(tmp_path: Path) -> None:
    r = run_cli("data", "synth", "--out", str(tmp_path / "ds"), "--per-class", "3", "--size", "32",
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "ds").glob("*/*.png"))) == 18
    r = run_cli("data", "synth", "--out", str(tmp_path / "x"), "--size", "4", timeout=120)
    assert r.returncode == 2 and "--size=4" in r.stderr
