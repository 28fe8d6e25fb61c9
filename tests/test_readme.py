"""The README's examples work and its numbers are the shipped files' numbers.

The Python API example and the `jointopt evaluate` example run for real, against a tiny
stand-in for studies/quickstart.yaml (same config, a supernet trained in seconds). Shell examples
that take hours (make demo, Docker, Ray) are checked for syntax, and every `jointopt` command line
in the README is parsed by the CLI itself: unknown options and bad values fail.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from helpers import ROOT, run_cli

from jointopt import Study
from jointopt.cli import cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.DOTALL | re.MULTILINE)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README) if kind == lang]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def commands(block: str) -> list[list[str]]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    text = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if shlex.split(line, comments=True)]


def parse_jointopt(args: list[str]) -> click.Context:
    """Parse a jointopt command line down to its subcommand, converting every value, without
    running it; raises click.UsageError (or a subclass) for anything the CLI would refuse."""
    ctx = cli.make_context("jointopt", list(args))
    while isinstance(ctx.command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9 drops it
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*getattr(ctx, "protected_args", []), *ctx.args]
        name, cmd, sub = ctx.command.resolve_command(ctx, rest)
        assert cmd is not None and name is not None, args
        ctx = cmd.make_context(name, sub, parent=ctx)
    return ctx


# ---- budgets --------------------------------------------------------------------------------

def test_demo_budgets_are_the_shipped_study() -> None:
    study = Study.from_yaml(ROOT / "studies" / "quickstart.yaml")
    text = " ".join(section("Two commands").split())
    assert f"trains the quickstart supernet for {study.train.epochs} epochs" in text
    sampler = {"nsga2": "NSGA-II", "nsga3": "NSGA-III"}.get(study.search.sampler.name,
                                                            study.search.sampler.name)
    assert f"runs a {study.search.n_trials}-trial {sampler} search" in text


def test_study_yaml_block_is_the_quickstart_study(tmp_path: Path) -> None:
    (block,) = [b for b in blocks("yaml") if b.startswith("name: quickstart")]
    shipped_path = ROOT / "studies" / "quickstart.yaml"
    readme = yaml.safe_load(block)
    shipped = yaml.safe_load(shipped_path.read_text())
    assert (readme["output"], readme["search_space"]) == (shipped["output"],
                                                          shipped["search_space"])
    # The same file contents from the same folder must give the same study.
    copy = tmp_path / "studies" / "quickstart.yaml"
    copy.parent.mkdir()
    readme["search_space"] = str(ROOT / "search_spaces" / "quickstart.yaml")
    copy.write_text(yaml.safe_dump(readme, sort_keys=False))  # objective order matters
    a, b = Study.from_yaml(copy), Study.from_yaml(shipped_path)
    for part in ("name", "seed", "dataset", "train", "evaluation", "search"):
        assert getattr(a, part) == getattr(b, part), part


def test_stated_defaults_are_the_defaults() -> None:
    from jointopt.controllers.spec import SearchSpec
    from jointopt.study import TrainSpec

    text = " ".join(section("Study YAML").split())
    m = re.search(r"whose defaults are (\d+), (\d+), (\d+), (\d+) and none", text)
    assert m is not None
    t, s = TrainSpec(), SearchSpec()
    assert [int(v) for v in m.groups()] == [t.epochs, t.distill_start, t.shift, s.n_trials]
    assert s.seed_configs == ()


def test_benchmark_budgets_are_the_bench_budgets() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench.common import BUDGETS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    q, f = BUDGETS["quick"], BUDGETS["full"]
    (block,) = [b for b in blocks("bash") if "make bench-quick" in b]
    assert (f"{q['trials']} trials, {q['seeds']} seed, a {q['wm_epochs']}-epoch WM-811K "
            "supernet") in block
    assert f"{f['trials']} trials x {f['seeds']} seeds" in block
    assert f"continued to {f['long_trials']} trials ({f['long_seeds']} seeds)" in " ".join(
        block.split())
    wm = Study.from_yaml(ROOT / "studies" / "wm811k.yaml")
    text = " ".join(section("Benchmarks").split())
    assert f"on WM-811K the supernet ({wm.train.epochs} epochs)" in text


# ---- commands -------------------------------------------------------------------------------

def _check_command(argv: list[str]) -> str:
    """Check one README command line without running it; returns what kind it was."""
    prog = Path(argv[0]).name
    if prog == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
        assert set(argv[1:]) <= targets, argv
        return "make"
    if prog == "jointopt":
        ctx = parse_jointopt(argv[1:])
        study = ctx.params.get("study_file")
        if study is not None:  # the README's install paths: /opt/jointopt, /app in the image
            for prefix in ("/opt/jointopt/", "/app/"):
                study = study.removeprefix(prefix)
            assert (ROOT / study).is_file(), study
        return "jointopt"
    if prog == "cp":
        assert (ROOT / argv[1]).is_file(), argv
        return "cp"
    if argv[:2] == ["docker", "compose"]:
        compose = yaml.safe_load((ROOT / argv[argv.index("-f") + 1]).read_text())
        services = set(compose["services"])
        if "--scale" in argv:  # --scale SERVICE=N
            assert argv[argv.index("--scale") + 1].split("=")[0] in services, argv
        if "run" in argv:
            assert argv[-1] in services, argv
        return "docker"
    if prog == "ray":
        if "--" in argv:  # ray job submit ... -- <the job's command>
            return _check_command(argv[argv.index("--") + 1:])
        from ray.scripts.scripts import cli as ray_cli

        sub = ray_cli.commands[argv[1]]
        sub.make_context(argv[1], argv[2:])  # its options exist and take these values
        return "ray"
    raise AssertionError(f"README command with no check here: {shlex.join(argv)}")


def test_shell_examples_parse() -> None:
    kinds = []
    for block in blocks("bash"):
        syntax = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert syntax.returncode == 0, (block, syntax.stderr)
        kinds += [_check_command(argv) for argv in commands(block)]
    assert {"make", "jointopt", "docker", "ray", "cp"} <= set(kinds)


def test_command_table_options_exist() -> None:
    rows = re.findall(r"^\| `(jointopt [^`]+)` \|", section("Command line"), re.MULTILINE)
    assert len(rows) >= 10
    leaves = {}
    for row in rows:
        words = row.split()
        cmd: click.Command = cli
        path = []
        for w in words[1:]:
            if isinstance(cmd, click.Group) and w in cmd.commands:
                cmd = cmd.commands[w]
                path.append(w)
        leaves[" ".join(path)] = cmd
        opts = {o for p in cmd.params for o in p.opts}
        for flag in re.findall(r"(--[\w-]+)", row):
            assert flag in opts, (row, flag)
    # every command is in the table
    assert set(leaves) == {"data synth", *(n for n in cli.commands if n != "data")}


def test_inline_commands_in_prose_parse() -> None:
    """Full `jointopt ...` command lines written inline in the prose parse too (bare names
    such as `jointopt search` and templates with STUDY or N are references, not commands)."""
    prose = "\n".join(line for line in README.splitlines() if not line.startswith("|"))
    checked = 0
    for text in re.findall(r"`((?:\.venv/bin/)?jointopt [^`]+)`", prose):
        argv = shlex.split(text)
        if len(argv) < 3 or argv[1] not in cli.commands or any(w.isupper() for w in argv):
            continue
        assert _check_command(argv) == "jointopt"
        checked += 1
    assert checked >= 2
    assert "`jointopt pareto/report" in README  # shorthand for two commands: check both
    for name in ("pareto", "report"):
        _check_command(["jointopt", name, "studies/cluster.yaml",
                        *(["--out", "r.html"] if name == "report" else [])])


# ---- the examples that run ------------------------------------------------------------------

STANDIN_SPACE = {
    "supernet": {"img_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 96, "num_heads": 2,
                 "head_dim": 16, "mlp_ratio": 3.0},
    "choices": {"depth": [2, 4], "embed_dim": [64, 96], "num_heads": [1, 2],
                "mlp_ratio": [2.0, 3.0], "tome_r": [0, 4], "w_bits": [32, 8], "a_bits": [32, 8]},
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository, whose studies/quickstart.yaml is tiny: 32x32
    images with 4x4 patches (65 tokens, as the real 64x64/8x8), a supernet holding the README's
    config, one epoch of training."""
    from jointopt.train import train_supernet

    root = tmp_path_factory.mktemp("standin")
    (root / "search_spaces").mkdir()
    (root / "studies").mkdir()
    (root / "search_spaces" / "quickstart.yaml").write_text(yaml.safe_dump(STANDIN_SPACE))
    study: dict[str, Any] = {
        "name": "quickstart", "output": "../runs/quickstart", "seed": 0,
        "dataset": {"kind": "synthetic", "image_size": 32, "channels": 1, "per_class": 12},
        "search_space": "../search_spaces/quickstart.yaml",
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "bf16": False},
        "evaluate": {"calib_batches": 1, "batch_size": 8, "latency_runs": 3, "warmup_runs": 1,
                     "max_foreign_load": 1.0, "threads": 1},
    }
    path = root / "studies" / "quickstart.yaml"
    path.write_text(yaml.safe_dump(study))
    train_supernet(Study.from_yaml(path), progress=False)
    return root


@pytest.mark.slow
def test_python_api_example_runs(standin: Path) -> None:
    (block,) = blocks("python")
    script = block + "\nimport json\nprint(json.dumps({'metrics': metrics.to_dict(), " \
                     "'params': sum(p.numel() for p in sub.parameters())}))\n"
    r = subprocess.run([sys.executable, "-c", script], cwd=standin, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.0 <= out["metrics"]["accuracy"] <= 1.0 and out["metrics"]["latency_ms"] > 0
    assert out["params"] > 0


@pytest.mark.slow
def test_evaluate_example_runs(standin: Path) -> None:
    (argv,) = [a for b in blocks("bash") for a in commands(b) if "evaluate" in a]
    assert argv[0] == ".venv/bin/jointopt"
    r = run_cli(*argv[1:], cwd=standin, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    config = json.loads(argv[argv.index("--config") + 1])
    assert out["config"]["depth"] == config["depth"]
    assert out["latency_runtime"] == "openvino-int8"  # the default runtime runs w8a8 in int8
