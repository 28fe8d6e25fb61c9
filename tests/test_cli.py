"""CLI habits: lazy imports, --version, -v/--quiet everywhere, results alone on stdout."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import ROOT, run_main, variant

from jointopt.cli import cli

HEAVY = ("torch", "torchvision", "timm", "optuna", "ray", "brevitas", "onnx", "onnxruntime",
         "pandas", "plotly", "scipy")


def _leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) \
        -> dict[tuple[str, ...], click.Command]:
    out: dict[tuple[str, ...], click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(_leaf_commands(cmd, (*path, name)))
        else:
            out[(*path, name)] = cmd
    return out


def test_help_imports_no_heavy_package() -> None:
    # A fresh interpreter: the test process itself has torch loaded long ago.
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "jointopt", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "search" in r.stdout and "--version" in r.stdout
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "click" in imported and "jointopt" in imported  # the measurement saw the imports
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_public_api_is_importable_lazily() -> None:
    code = ("import sys, jointopt, jointopt.cli\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "from jointopt import JointConfig, SearchSpace, Study, ViTSupernet, evaluate\n"
            "import jointopt.evaluation as ev\n"
            "print(evaluate is ev.evaluate, callable(evaluate), Study.__module__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True True jointopt.study"]
    import jointopt

    with pytest.raises(AttributeError, match="no_such_name"):
        jointopt.no_such_name  # noqa: B018
    assert set(jointopt.__all__) <= set(dir(jointopt))


def test_version_matches_the_package(capfd: pytest.CaptureFixture[str]) -> None:
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(),
                        flags=re.MULTILINE).group(1)  # type: ignore[union-attr]
    rc, out, _ = run_main(capfd, "--version")
    assert rc == 0 and out.strip() == f"jointopt {version}"


def test_every_command_takes_verbose_and_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    commands = _leaf_commands()
    assert len(commands) >= 10
    for path, cmd in commands.items():
        names = {opt for p in cmd.params for opt in p.opts}
        assert {"-v", "--verbose", "-q", "--quiet"} <= names, path
    # Before the subcommand, on the group between, and after it: all accepted.
    for argv in (["-v", "--quiet", "data", "synth"], ["data", "-v", "synth", "--quiet"],
                 ["data", "synth", "-vv", "-q"]):
        rc, out, err = run_main(capfd, *argv, "--out", str(ROOT / "runs" / "_never_written"),
                               "--per-class", "0")
        # --per-class 0 is a user error: the options parsed, the command ran, nothing written.
        assert rc == 2 and "--per-class=0" in err, (argv, err)
    assert not (ROOT / "runs" / "_never_written").exists()


def test_data_synth_with_options_after_the_subcommand(tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capfd, "data", "synth", "--out", str(tmp_path / "d"),
                           "--per-class", "1", "--size", "16", "-v", "--quiet")
    assert rc == 0, err
    assert out.startswith("wrote 6 images")
    assert len(list((tmp_path / "d").rglob("*.png"))) == 6
    # --quiet drops progress, not warnings (a storage outage being retried must still show);
    # -v counts across the line.
    for argv, level in ((["--quiet"], logging.WARNING), (["-v", "--quiet"], logging.INFO),
                        (["-v", "-v"], logging.DEBUG)):
        rc, _, err = run_main(capfd, argv[0], "data", "synth", *argv[1:], "--out",
                             str(tmp_path / "d"), "--per-class", "1", "--size", "16")
        assert rc == 0, err
        assert logging.getLogger().getEffectiveLevel() == level, argv


@pytest.mark.slow
def test_json_outputs_parse_and_progress_goes_to_stderr(
        trained_tiny: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    study = str(variant(trained_tiny, tmp_path, "cli", n_trials=3))
    rc, out, err = run_main(capfd, "search", study)
    assert rc == 0, err
    assert "3 complete" in out and f"--n-trials {3 + 10}" in out
    assert "trial" in err  # the per-trial progress lines, on stderr
    rc, out, err = run_main(capfd, "search", study, "--quiet")  # finished: says how to extend it
    assert rc == 0 and "has its 3 trials" in out and "--n-trials" in out and err == ""

    cfg = {"depth": 2, "embed_dim": 24, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": 0,
           "w_bits": 32, "a_bits": 32}
    cases = {
        ("summary",): ["summary", study, "--json"],
        ("train-fixed",): ["train-fixed", study, "--model", "min", "--epochs", "1", "--json"],
        ("evaluate",): ["evaluate", study, "--config", json.dumps(cfg), "--json"],
        ("pareto",): ["pareto", study, "--json"],
    }
    with_json = {p for p, c in _leaf_commands().items()
                 if any("--json" in param.opts for param in c.params)}
    assert with_json == set(cases), "a command with --json has no case here"
    for path, argv in cases.items():
        rc, out, err = run_main(capfd, *argv)
        assert rc == 0, (path, err)
        parsed = json.loads(out)  # nothing but the JSON on stdout
        assert parsed, path
        if path == ("train-fixed",):
            assert parsed["epochs"] == 1 and 0 <= parsed["test_accuracy"] <= 1
            assert re.search(r"epoch 1/1 loss=", err)  # progress, on stderr
            rc, out, err = run_main(capfd, *argv, "--quiet")
            assert rc == 0 and json.loads(out)["epochs"] == 1
            assert "epoch 1/1" not in err
        if path == ("pareto",):
            assert parsed["trials"] >= 1 and parsed["baseline"]["number"] == 0
            storage = parsed["storage"]  # counts every stored trial
            assert storage["complete"] == storage["measured"] + storage["repeats"] \
                + storage["invalid"] >= 3 and storage["distinct"] <= storage["measured"]


@pytest.mark.slow
def test_export_reports_progress_on_stderr(trained_tiny: Path, tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    study = str(variant(trained_tiny, tmp_path, "exp", n_trials=1))
    assert run_main(capfd, "search", study, "-q")[0] == 0
    rc, out, err = run_main(capfd, "export", study, "--out", str(tmp_path / "x"), "--trial", "0")
    assert rc == 0, err
    assert err.startswith("exporting trial(s) 0 of study 'exp'")
    assert "trial 0: openvino-" in err and "test_accuracy=" in err
    assert out.splitlines() == [f"front of 1; exported 1 trial(s) to {tmp_path / 'x'}"]
    rc, out, err = run_main(capfd, "export", study, "--out", str(tmp_path / "y"), "--trial", "0",
                           "--quiet")
    assert rc == 0 and err == "" and "exported 1 trial(s)" in out
