"""The ``jointopt`` command line.

A mistake in user input (a file, a field, a value) prints one line and exits with status 2; no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import click

from jointopt.errors import StorageLost, UserError

__all__ = ["main", "cli"]


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Joint architecture, token-merging and bit-width search for Vision Transformers."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # Import-time chatter of Brevitas's optional CUDA kernels on a CPU machine.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)


@cli.group()
def data() -> None:
    """Datasets."""


@data.command("synth")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the ImageFolder tree into.")
@click.option("--per-class", default=400, show_default=True, type=int)
@click.option("--size", default=64, show_default=True, type=int, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
def data_synth(out: Path, per_class: int, size: int, seed: int) -> None:
    """Write the synthetic IC-package X-ray dataset as ImageFolder."""
    from jointopt.data.synth import CLASSES, generate

    if per_class < 1:
        raise UserError(f"--per-class={per_class}: must be at least 1")
    if size < 16:
        raise UserError(f"--size={size}: must be at least 16")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out={str(out)!r}: exists and is not a folder")
    generate(out, per_class=per_class, size=size, seed=seed)
    click.echo(f"wrote {per_class * len(CLASSES)} images in {len(CLASSES)} classes to {out}")


def _study(path: str):  # type: ignore[no-untyped-def]
    from jointopt.study import Study

    return Study.from_yaml(path)


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(study_file: str, quiet: bool) -> None:
    """Train (or resume) the study's supernet, then summarise its largest and smallest subnet."""
    from jointopt.report.summary import subnet_table
    from jointopt.train import train_supernet

    study = _study(study_file)
    net, result = train_supernet(study, progress=not quiet)
    click.echo(f"supernet: {study.checkpoint} ({result.epochs_run} epochs run now, "
               f"{result.seconds:.0f} s)")
    click.echo(subnet_table(study, net))


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--test", "with_test", is_flag=True,
              help="Also score the test split (for final reports only).")
def summary(study_file: str, as_json: bool, with_test: bool) -> None:
    """Accuracy, balanced accuracy, parameters and MACs of the trained supernet's largest and
    smallest subnet."""
    from jointopt.report.summary import subnet_rows, subnet_table

    study = _study(study_file)
    net = study.load_supernet()
    splits = ("val", "test") if with_test else ("val",)
    if as_json:
        click.echo(json.dumps(subnet_rows(study, net, splits), indent=2))
    else:
        click.echo(subnet_table(study, net, splits))


@cli.command("train-fixed")
@click.argument("study_file", metavar="STUDY")
@click.option("--model", "model_name", required=True,
              help="max | min | subnet:<json config> | timm:<model>[<json create_model args>] "
                   "(e.g. timm:resnet10t).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Budget in epochs (default: the study's train.epochs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def train_fixed_cmd(study_file: str, model_name: str, epochs: int | None, seed: int,
                    as_json: bool) -> None:
    """Train one fixed model standalone with the study's data and recipe (a reference, or a
    supernet's train.teacher); its weights go to <output>/fixed/<model>.safetensors."""
    from jointopt.baselines import train_fixed

    out = train_fixed(_study(study_file), model_name, epochs=epochs, seed=seed, save=True)
    out.pop("model_object")
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in out.items()))


def _parse_config(text: str):  # type: ignore[no-untyped-def]
    from jointopt.space import JointConfig

    src = "--config"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"--config={text!r}: file not found")
        src, text = str(path), path.read_text()
    try:
        import yaml

        data = yaml.safe_load(text)  # JSON is YAML; a file may be either
    except Exception as e:  # noqa: BLE001  (any parse failure is the user's input)
        raise UserError(f"{src}: not valid JSON/YAML: {str(e).splitlines()[0]}") from e
    return JointConfig.from_dict(data, source=src)


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--config", "config_text", required=True,
              help="The joint config as JSON (or @file.json / @file.yaml).")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(study_file: str, config_text: str, split: str, as_json: bool) -> None:
    """Evaluate one joint config: accuracy, size, measured latency and energy."""
    from jointopt.evaluation import evaluate as run_eval

    study = _study(study_file)
    cfg = _parse_config(config_text)
    study.space.validate(cfg, source="--config")
    metrics = run_eval(study, cfg, split=split).to_dict()
    if as_json:
        click.echo(json.dumps({"config": cfg.to_dict(), **metrics}, indent=2))
    else:
        for k, v in metrics.items():
            click.echo(f"{k:>16}: {v:,.6g}" if isinstance(v, float) else f"{k:>16}: {v}")


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--backend", type=click.Choice(["optuna", "ray"]), default=None,
              help="Override the study's search.backend.")
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="Complete this many trials in all (default: search.n_trials).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def search(study_file: str, backend: str | None, n_trials: int | None, quiet: bool) -> None:
    """Run or resume the study's multi-objective search."""
    import optuna

    from jointopt.controllers import run_search
    from jointopt.controllers.optuna_backend import summary

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(study_file)
    ostudy = run_search(study, backend=backend, n_trials=n_trials, progress=not quiet)
    click.echo(f"study {study.search.study_name!r}: {summary(ostudy)} "
               f"({study.storage_url if '@' not in study.storage_url else 'storage'})")


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the study to the network.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def dashboard(study_file: str, host: str, port: int) -> None:
    """Serve optuna-dashboard on the study's storage (bound to 127.0.0.1 by default)."""
    import optuna_dashboard

    from jointopt.controllers.storage import open_storage

    study = _study(study_file)
    storage = open_storage(study)
    click.echo(f"optuna-dashboard for study {study.search.study_name!r}: "
               f"http://{host}:{port}/dashboard/", err=False)
    sys.stdout.flush()
    optuna_dashboard.run_server(storage, host=host, port=port)


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--json", "as_json", is_flag=True, help="Print the front as JSON.")
def pareto(study_file: str, as_json: bool) -> None:
    """The Pareto front, its hypervolume, knee point and reductions against the baseline."""
    from jointopt.report.front import format_summary, pareto_summary

    s = pareto_summary(_study(study_file))
    if as_json:
        s = {k: v for k, v in s.items() if k != "table"}
        click.echo(json.dumps(s, indent=2, default=float))
    else:
        click.echo(format_summary(s))


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path))
@click.option("--trial", "trials", multiple=True, type=int,
              help="Trial number to export (repeatable); default: every front member.")
def export(study_file: str, out: Path, trials: tuple[int, ...]) -> None:
    """Write pareto.yaml/.csv and, per trial, config.yaml, weights and model.onnx."""
    from jointopt.export import export_study

    s = export_study(_study(study_file), out, trials=list(trials) or None)
    click.echo(f"front of {s['front']}; exported {len(s['exported'])} trial(s) to {out}")


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path))
def report(study_file: str, out: Path) -> None:
    """Write a self-contained plotly HTML report of the study."""
    from jointopt.export import objectives_of, study_records
    from jointopt.report.html import write_report

    study = _study(study_file)
    records, base, _ = study_records(study)
    if base is None:
        raise UserError(f"{study.path}: study has no evaluated baseline yet; run jointopt search")
    write_report(records, objectives_of(study), base, out,
                 title=f"jointopt: {study.search.study_name}")
    click.echo(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="jointopt", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except StorageLost as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        # Usage errors (unknown option, missing argument): one line, exit 2.
        click.echo(f"error: {e.format_message()}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
