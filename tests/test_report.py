from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import browser

from jointopt.pareto import DEFAULT_OBJECTIVES, Objective, pareto_front
from jointopt.report.html import write_report

PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")
PLOT_DIV = 'class="plotly-graph-div"'


def _records(n: int = 24, energy_source: str = "model:horowitz45") -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        depth = int(rng.choice([2, 3]))
        bits = int(rng.choice([32, 8, 4]))
        out.append({
            "number": i,
            "config": {"depth": depth, "embed_dim": int(rng.choice([32, 64])),
                       "num_heads": [int(rng.choice([1, 2])) for _ in range(depth)],
                       "mlp_ratio": 2.0, "tome_r": [int(rng.choice([0, 2]))] * depth,
                       "w_bits": bits, "a_bits": bits},
            "metrics": {"accuracy": float(rng.uniform(0.6, 0.95)), "params": 1e4 * depth,
                        "macs": 1e6 * depth, "bitops": 1e6 * depth * bits * bits,
                        "model_bytes": 1e4 * depth * bits / 8,
                        "latency_ms": float(rng.uniform(0.2, 2.0)),
                        "throughput_ips": float(rng.uniform(500, 5000)),
                        "latency_runtime": "onnxruntime-int8" if bits == 8 else "torch-fp32",
                        "energy_mj": float(rng.uniform(0.01, 0.2)),
                        "energy_source": energy_source},
            "feasible": i % 5 != 2,
        })
    return out


def _baseline(energy_source: str = "model:horowitz45") -> dict[str, Any]:
    return {"number": -1,
            "config": {"depth": 3, "embed_dim": 64, "num_heads": 2, "mlp_ratio": 2.0,
                       "tome_r": 0, "w_bits": 32, "a_bits": 32},
            "metrics": {"accuracy": 0.95, "params": 3e4, "macs": 3e6, "bitops": 3e6 * 1024,
                        "model_bytes": 1.2e5, "latency_ms": 2.2, "throughput_ips": 400.0,
                        "latency_runtime": "torch-fp32", "energy_mj": 0.25,
                        "energy_source": energy_source},
            "feasible": True}


# Curved on purpose: plotly draws a straight run of points as one segment.
HISTORY = [{"epoch": float(e), "loss": 2.0 / e, "val_largest": 0.95 - 0.5 / e,
            "val_smallest": 0.85 - 0.5 / e ** 0.5} for e in range(1, 11)]
# 3 objective pairs, the 3-D scatter, effects, importances, parallel coordinates, hypervolume
# history, training curve.
N_FIGURES = 9


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    return write_report(_records(), DEFAULT_OBJECTIVES, _baseline(), out, title="tiny <study>",
                        training=HISTORY, training_source="out/train_state.pt")


def test_report_is_one_offline_page(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert len(PLOTLY_BANNER.findall(page)) == 1  # plotly.js inlined exactly once
    assert "<script src" not in page  # nothing fetched: the page works offline
    assert page.count(PLOT_DIV) == N_FIGURES
    assert page.count("Plotly.newPlot(") == N_FIGURES
    for name in ("front-3d", "effects", "importance", "axes", "hypervolume", "training"):
        assert f'id="fig-{name}"' in page, name
    assert '"type":"parcoords"' in page
    assert "tiny &lt;study&gt;" in page
    assert "<b>modelled</b>" in page and "horowitz45" in page
    assert 'id="front-table"' in page and "throughput &times;" in page
    assert "10 epochs (<code>out/train_state.pt</code>)" in page


def test_report_two_objectives_and_measured_energy(tmp_path: Path) -> None:
    objectives = [Objective("accuracy", "maximize"), Objective("throughput_ips", "maximize")]
    page = write_report(_records(8, "rapl"), objectives, _baseline("rapl"),
                        tmp_path / "r.html", title="t").read_text(encoding="utf-8")
    # one pair, no 3-D scatter, no training curve
    assert page.count(PLOT_DIV) == N_FIGURES - 4
    assert "No training history found" in page
    assert 'id="fig-front-3d"' not in page
    assert "modelled" not in page and "Energy measured with rapl" in page
    assert "latency_contended" not in page


def test_report_flags_timings_taken_on_busy_cores(tmp_path: Path) -> None:
    recs = _records(8)
    recs[3]["metrics"]["latency_contended"] = 0.62
    page = write_report(recs, DEFAULT_OBJECTIVES, _baseline(), tmp_path / "r.html",
                        title="t").read_text(encoding="utf-8")
    assert "1 timing(s) were taken while other processes kept the timed cores busy" in page


def test_report_with_no_records(tmp_path: Path) -> None:
    page = write_report([], DEFAULT_OBJECTIVES, _baseline(), tmp_path / "r.html",
                        title="empty").read_text(encoding="utf-8")
    assert page.count(PLOT_DIV) == N_FIGURES - 1 and "holds 0 trials" in page


def _figure_markup(dom: str) -> dict[str, str]:
    """The rendered markup of each figure div, by its id."""
    ids = re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div', dom)
    starts = [dom.index(f'<div id="{i}"') for i in ids] + [len(dom)]
    return {i: dom[a:b] for i, a, b in zip(ids, starts, starts[1:], strict=False)}


@pytest.mark.slow
def test_error_detector_catches_a_deliberate_error(report: Path, tmp_path: Path) -> None:
    # Proves the check below can fail: the same page with one bad script and one bad promise.
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", "<script>notDefinedAnywhere();</script>"
                   "<script>Promise.reject(new Error('deliberate'));</script></body>"),
        encoding="utf-8")
    got = browser.render(broken)
    assert any("notDefinedAnywhere" in e for e in browser.collected_errors(got.dom))
    assert any("deliberate" in e for e in browser.collected_errors(got.dom))
    assert any(e.startswith("Uncaught ReferenceError") for e in browser.console_errors(got.stderr))
    # The plots before the error still rendered: errors, not a blank page, are what we detect.
    assert "main-svg" in got.dom


# Runs in the rendered page once plotly has drawn: hovers the first Pareto-front point and one
# effect-plot point (as a mouse would), and measures what the dumped DOM alone cannot show.
PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var out = {};
  function hoverText(gd) {
    return Array.from(gd.querySelectorAll(".hoverlayer .hovertext")).map(function (e) {
      return Array.from(e.querySelectorAll("tspan.line")).map(function (t) {
        return t.textContent; }).join("\\n"); });
  }
  try {
    var gd = document.getElementById("fig-front-accuracy-latency_ms");
    var curve = gd.data.findIndex(function (t) { return t.name === "Pareto front"; });
    Plotly.Fx.hover(gd, [{curveNumber: curve, pointNumber: 0}]);
    out.front_hover = hoverText(gd);
    var eff = document.getElementById("fig-effects");
    out.effect_subplots = eff.querySelectorAll(".cartesianlayer > .subplot").length;
    out.effect_boxes = eff.querySelectorAll("g.trace.boxes").length;
    out.effect_points = eff.querySelectorAll("g.trace.boxes path.point").length;
    var pt = eff.querySelector(".subplot.xy g.trace.boxes path.point");
    var xy = pt.getAttribute("transform").match(/translate\\(([-\\d.]+),\\s*([-\\d.]+)\\)/);
    Plotly.Fx.hover(eff, {xpx: +xy[1], ypx: +xy[2]}, "xy");
    out.effect_hover = hoverText(eff);
    var tr = document.getElementById("fig-training");
    out.training_vertices = Array.from(
      tr.querySelectorAll(".cartesianlayer .scatterlayer path.js-line")).map(function (p) {
        return (p.getAttribute("d").match(/L/g) || []).length + 1; });
    out.viewport = document.documentElement.clientWidth;
    out.factor_right = Math.max.apply(null, Array.from(
      document.querySelectorAll("#front-table th.factor")).map(function (th) {
        return th.getBoundingClientRect().right; }));
  } catch (e) { out.error = String(e && e.stack || e); }
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}, 300); });
</script>"""


@pytest.mark.slow
def test_report_in_chromium_hover_effects_training(report: Path, tmp_path: Path) -> None:
    """The page as a browser draws it; the screenshot is kept in tmp_path to be looked at."""
    probed = tmp_path / "report.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    shot = tmp_path / "report.png"
    got = browser.render(probed, screenshot=shot, window=(1280, 6400))
    assert got.errors == [], got.errors
    figures = _figure_markup(got.dom)
    assert len(figures) == N_FIGURES
    for fig_id, markup in figures.items():
        assert 'class="main-svg"' in markup, f"{fig_id} was not drawn"
    # The WebGL traces drew onto canvases (headless Chromium runs WebGL on SwiftShader).
    assert "<canvas" in figures["fig-front-3d"] and "<canvas" in figures["fig-axes"]
    # 7 joint axes, accuracy, and 4 costs (latency, throughput, energy, model size)
    assert figures["fig-axes"].count('class="y-axis"') == 12
    assert "latency_ms" in figures["fig-axes"] and "energy_mj" in figures["fig-axes"]

    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', got.dom,
                                               flags=re.DOTALL).group(1)))  # type: ignore[union-attr]
    assert "error" not in probe, probe["error"]
    # Hover: the first front member (trace order = trial order) with its metrics.
    member = pareto_front(_records(), DEFAULT_OBJECTIVES)[0]
    m = member["metrics"]
    (label,) = probe["front_hover"]
    assert label.startswith(f"trial {member['number']} ")
    for text in (f"accuracy {m['accuracy']:.4f}", f"latency {m['latency_ms']:.3g} ms",
                 f"throughput {m['throughput_ips']:,.0f} img/s",
                 f"energy {m['energy_mj']:.3g} mJ (modelled)"):
        assert text in label, (text, label)
    (label,) = probe["effect_hover"]
    assert re.search(r"accuracy 0\.\d{4}\n.*latency .* ms", label, flags=re.DOTALL), label
    # Effects: accuracy and latency over 4 axes, every measured trial a point in each panel.
    assert probe["effect_subplots"] == probe["effect_boxes"] == 8
    assert probe["effect_points"] == 8 * len(_records())
    # Training curve: 3 lines (two accuracies, the loss), one vertex per epoch.
    assert probe["training_vertices"] == [len(HISTORY)] * 3
    # The reduction factors are on screen without scrolling sideways.
    assert probe["factor_right"] <= probe["viewport"]
    assert got.screenshot is not None and got.screenshot.stat().st_size > 50_000
