"""The ``jointopt`` command line.

A mistake in user input (a file, a field, a value) prints one line and exits with status 2; no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jointopt import __version__
from jointopt.errors import SearchFailed, StorageLost, UserError, clip, mask_secrets

__all__ = ["main", "cli"]


@dataclass
class _Settings:
    """-v and --quiet as given anywhere on the line (before or after the subcommand)."""

    verbose: int = 0
    quiet: bool = False


def _settings() -> _Settings:
    return click.get_current_context().find_root().ensure_object(_Settings)


def _configure_logging(s: _Settings) -> None:
    # --quiet drops progress only: warnings (a storage outage being retried) still show.
    level = logging.WARNING - 10 * min(s.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if not s.verbose:
        # Import-time chatter of Brevitas's optional CUDA kernels on a CPU machine.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def _verbosity(f: Callable[..., Any]) -> Callable[..., Any]:
    """Accept -v and --quiet on this group or command; a command applies them when it runs."""

    @functools.wraps(f)
    def wrapper(*args: Any, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        s = _settings()
        s.verbose += verbose
        s.quiet = s.quiet or quiet
        if not isinstance(click.get_current_context().command, click.Group):
            _configure_logging(s)
        return f(*args, **kwargs)

    wrapper = click.option("-q", "--quiet", is_flag=True,
                           help="No progress output (warnings and errors still show).")(wrapper)
    return click.option("-v", "--verbose", count=True,
                        help="More log output (-v info, -vv debug).")(wrapper)


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """Progress the library prints (tqdm.write, print) goes to stderr: stdout carries only the
    command's result, so `--json` output parses and `> file` keeps just the result."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _progress(message: str) -> None:
    if not _settings().quiet:
        click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="jointopt",
                      message="%(prog)s %(version)s")
@_verbosity
def cli() -> None:
    """Joint architecture, token-merging and bit-width search for Vision Transformers."""


@cli.group()
@_verbosity
def data() -> None:
    """Datasets."""


@data.command("synth")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the ImageFolder tree into.")
@click.option("--per-class", default=400, show_default=True, type=int)
@click.option("--size", default=64, show_default=True, type=int, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@_verbosity
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
@_verbosity
def train(study_file: str) -> None:
    """Train (or resume) the study's supernet, then summarise its largest and smallest subnet."""
    from jointopt.report.summary import subnet_table
    from jointopt.train import train_supernet

    study = _study(study_file)
    study.check_checkpoint()  # a resumed checkpoint must fit the study before any work
    with _progress_to_stderr():
        net, result = train_supernet(study, progress=not _settings().quiet)
        table = subnet_table(study, net)
    click.echo(f"supernet: {study.checkpoint} ({result.epochs_run} epochs run now, "
               f"{result.seconds:.0f} s)")
    click.echo(table)


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--test", "with_test", is_flag=True,
              help="Also score the test split (for final reports only).")
@_verbosity
def summary(study_file: str, as_json: bool, with_test: bool) -> None:
    """Accuracy, balanced accuracy, parameters and MACs of the trained supernet's largest and
    smallest subnet."""
    from jointopt.report.summary import subnet_rows, subnet_table

    study = _study(study_file)
    splits = ("val", "test") if with_test else ("val",)
    with _progress_to_stderr():
        net = study.load_supernet()
        out = (json.dumps(subnet_rows(study, net, splits), indent=2) if as_json
               else subnet_table(study, net, splits))
    click.echo(out)


@cli.command("train-fixed")
@click.argument("study_file", metavar="STUDY")
@click.option("--model", "model_name", required=True,
              help="max | min | subnet:<json config> | timm:<model>[<json create_model args>] "
                   "(e.g. timm:resnet10t).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Budget in epochs (default: the study's train.epochs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_verbosity
def train_fixed_cmd(study_file: str, model_name: str, epochs: int | None, seed: int,
                    as_json: bool) -> None:
    """Train one fixed model standalone with the study's data and recipe (a reference, or a
    supernet's train.teacher); its weights go to <output>/fixed/<model>.safetensors."""
    from jointopt.baselines import train_fixed

    with _progress_to_stderr():
        out = train_fixed(_study(study_file), model_name, epochs=epochs, seed=seed,
                          progress=not _settings().quiet, save=True)
    out.pop("model_object")
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in out.items()))


def _parse_config(text: str):  # type: ignore[no-untyped-def]
    from jointopt.space import JointConfig
    from jointopt.yamlio import MAX_BYTES, parse_yaml

    src = "--config"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"--config={clip(repr(text))}: file not found")
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"--config={clip(repr(text))}: larger than {MAX_BYTES} bytes")
        try:
            src, text = str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--config={clip(repr(text))}: cannot read: {clip(str(e))}"
                            ) from None
    data = parse_yaml(text, src)  # JSON is YAML; a file may be either
    return JointConfig.from_dict(data, source=src)


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--config", "config_text", required=True,
              help="The joint config as JSON (or @file.json / @file.yaml).")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_verbosity
def evaluate(study_file: str, config_text: str, split: str, as_json: bool) -> None:
    """Evaluate one joint config: accuracy, size, measured latency and energy."""
    study = _study(study_file)
    cfg = _parse_config(config_text)
    study.space.validate(cfg, source="--config")  # a bad config fails before torch loads
    from jointopt.evaluation import evaluate as run_eval

    with _progress_to_stderr():
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
@_verbosity
def search(study_file: str, backend: str | None, n_trials: int | None) -> None:
    """Run or resume the study's multi-objective search."""
    import optuna

    from jointopt.controllers import run_search
    from jointopt.controllers.optuna_backend import summary
    from jointopt.controllers.storage import storage_description

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(study_file)
    with _progress_to_stderr():
        ostudy = run_search(study, backend=backend, n_trials=n_trials,
                            progress=not _settings().quiet)
    states = summary(ostudy)
    where = storage_description(study.storage_url, study)
    click.echo(f"study {study.search.study_name!r}: "
               + ", ".join(f"{n} {s.lower()}" for s, n in states.items()) + f" ({where})")
    target = n_trials or study.search.n_trials
    complete = states.get("COMPLETE", 0)
    if complete >= target:
        click.echo(f"The search has its {target} trials. To extend it, give the new total: "
                   f"jointopt search {study_file} --n-trials {target + max(10, target // 2)}")
    else:
        click.echo(f"{complete} of {target} trials complete; run the same command again to "
                   "resume.")


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the study to the network.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@_verbosity
def dashboard(study_file: str, host: str, port: int) -> None:
    """Serve optuna-dashboard on the study's storage (bound to 127.0.0.1 by default)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    from jointopt.controllers.storage import open_storage, open_study

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would bury the URL

    study = _study(study_file)
    storage = open_storage(study, create=False)
    open_study(study, storage, create=False)  # the study exists (names it if not)
    try:
        # Bound before the URL is printed: a busy port is the user's to fix, not a traceback.
        server = make_server(host, port, optuna_dashboard.wsgi(storage), handler_class=Quiet)
    except (OSError, UnicodeError) as e:
        raise UserError(f"--host={clip(host)} --port={port}: cannot listen there: "
                        f"{clip(getattr(e, 'strerror', None) or str(e))}") from None
    click.echo(f"optuna-dashboard for study {study.search.study_name!r}: "
               f"http://{host}:{port}/dashboard/", err=False)
    sys.stdout.flush()
    with server:
        server.serve_forever()


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--json", "as_json", is_flag=True, help="Print the front as JSON.")
@_verbosity
def pareto(study_file: str, as_json: bool) -> None:
    """The Pareto front, its hypervolume, knee point and reductions against the baseline."""
    from jointopt.report.front import format_summary, pareto_summary

    with _progress_to_stderr():
        s = pareto_summary(_study(study_file))
    if as_json:
        s = {k: v for k, v in s.items() if k != "table"}
        s["storage"] = s["storage"].to_dict()
        click.echo(json.dumps(s, indent=2, default=float))
    else:
        click.echo(format_summary(s))


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path))
@click.option("--trial", "trials", multiple=True, type=int,
              help="Trial number to export (repeatable); default: every front member.")
@_verbosity
def export(study_file: str, out: Path, trials: tuple[int, ...]) -> None:
    """Write pareto.yaml/.csv and, per trial, config.yaml, weights and model.onnx."""
    from jointopt.export import export_study

    if out.exists() and not out.is_dir():
        raise UserError(f"--out={clip(repr(str(out)))}: exists and is not a folder")
    from jointopt.controllers.storage import open_storage, open_study

    study = _study(study_file)
    # A storage without the study is one line of error, before any progress is printed.
    open_study(study, open_storage(study, create=False), create=False)
    which = ", ".join(map(str, trials)) if trials else "every Pareto-front member"
    _progress(f"exporting trial(s) {which} of study {study.search.study_name!r} to {out}: "
              "each is scored on the test split, exported to ONNX and checked against its "
              "precision plan")
    with _progress_to_stderr():
        s = export_study(study, out, trials=list(trials) or None,
                         progress=not _settings().quiet)
    click.echo(f"front of {s['front']}; exported {len(s['exported'])} trial(s) to {out}")


@cli.command()
@click.argument("study_file", metavar="STUDY")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path))
@_verbosity
def report(study_file: str, out: Path) -> None:
    """Write a self-contained plotly HTML report of the study."""
    from jointopt.controllers.objective import objectives_of, study_records
    from jointopt.report.counts import TrialCounts
    from jointopt.report.html import write_report
    from jointopt.report.training import load_history

    if out.is_dir():
        raise UserError(f"--out={clip(repr(str(out)))}: is a folder; give the HTML file to write")
    study = _study(study_file)
    records, base, ostudy = study_records(study)
    if base is None:
        raise UserError(f"{study.path}: study has no evaluated baseline yet; run jointopt search")
    with _progress_to_stderr():
        write_report(records, objectives_of(study), base, out,
                     title=f"jointopt: {study.search.study_name}",
                     counts=TrialCounts.from_trials(ostudy.get_trials(deepcopy=False)),
                     training=load_history(study.train_state),
                     training_source=str(study.train_state))
    click.echo(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="jointopt", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {_line(e)}", err=True)
        return 2
    except (StorageLost, SearchFailed) as e:
        click.echo(f"error: {_line(e)}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        # Usage errors (unknown option, missing argument): one line, exit 2.
        click.echo(f"error: {_line(e.format_message())}", err=True)
        return 2
    return 0


def _line(e: object) -> str:
    """A message as one line, credentials masked, bounded (a last guard: messages are built
    bounded, but the CLI promises one line whatever an exception carries)."""
    return clip(mask_secrets(str(e)), 2000)


if __name__ == "__main__":
    sys.exit(main())
