"""The supernet's training curve, read from the per-epoch history that training saves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from jointopt.report.figures import TEMPLATE

__all__ = ["load_history", "training_figure"]

History = Sequence[Mapping[str, float]]
_ACCURACY_STYLE = {"val_largest": ("largest subnet", "#1f5fbf"),
                   "val_smallest": ("smallest subnet", "#ff9f1c")}


def load_history(path: Path) -> list[dict[str, float]] | None:
    """The rows ``{"epoch", "loss", "val_largest", ...}`` of a ``train_state.pt``; None when the
    file is missing or holds no history (see `jointopt.train.train_model` for its layout)."""
    if not path.is_file():
        return None
    import torch

    state = torch.load(path, weights_only=True, map_location="cpu")
    keys, rows = state.get("history_keys"), state.get("history")
    if not keys or rows is None:
        return None
    return [dict(zip(keys, map(float, row), strict=True)) for row in rows.tolist()]


def training_figure(history: History) -> Any:
    """Training loss (right axis) and validation accuracy of the largest and smallest subnet
    (left axis) per epoch; any other numeric column of the history is drawn as accuracy too."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    columns = list(dict.fromkeys(k for row in history for k in row if k not in ("epoch", "loss")))
    for key in columns:
        name, color = _ACCURACY_STYLE.get(key, (key, None))
        fig.add_trace(go.Scatter(x=epochs, y=[row.get(key) for row in history], name=name,
                                 mode="lines",
                                 line={"color": color, "width": 2, "simplify": False},
                                 hovertemplate="epoch %{x}: %{y:.4f}<extra>" + name
                                 + " (val accuracy)</extra>"), secondary_y=False)
    if any("loss" in row for row in history):
        fig.add_trace(go.Scatter(x=epochs, y=[row.get("loss") for row in history],
                                 name="training loss", mode="lines",
                                 line={"color": "#888", "width": 1, "dash": "dot",
                                       "simplify": False},
                                 hovertemplate="epoch %{x}: %{y:.4f}<extra>loss</extra>"),
                      secondary_y=True)
    fig.update_layout(template=TEMPLATE, margin={"l": 60, "r": 60, "t": 20, "b": 40},
                      xaxis_title="epoch", legend={"orientation": "h", "y": 1.08})
    if len(history) <= 20:
        fig.update_xaxes(dtick=1)  # no ticks at half epochs
    fig.update_yaxes(title_text="validation accuracy", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="training loss", rangemode="tozero", showgrid=False,
                     secondary_y=True)
    return fig
