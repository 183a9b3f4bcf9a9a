"""The report's charts: matplotlib figures made without pyplot (no global state, Agg canvas), returned as PNG bytes.

Every chart takes the small aggregated rows the report collected and draws at a low dpi so the HTML stays small.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 90
BLUE = "#3b6ea8"
RED = "#c0392b"
GREY = "#7f8c8d"
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e8eb",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
}


@contextmanager
def _style() -> Iterator[None]:
    with rc_context(STYLE):
        yield


def data_uri(png: bytes) -> str:
    """A `data:` URI of PNG bytes, for an `<img src>` that needs no file beside the HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    fig.clear()
    return buffer.getvalue()


def _grid(
    n: int, per_row: int, panel_width: float, panel_height: float,
    margins: tuple[float, float, float, float] | None = None,
) -> tuple[Figure, list[Any]]:
    """A figure of `n` panels, `per_row` to a row; unused cells of the last row are hidden.

    `margins`: the room (left, bottom, right, top, in inches) each panel keeps around its axes for its tick
    labels and title, for the grids of many panels whose labels have a known size. matplotlib's constrained
    layout (without `margins`) measures every text of every panel again: a 26-panel grid of histograms drew in
    1.6 s with it and 0.9 s with fixed margins (measured on the 2-core machine).
    """
    cols = max(1, min(n, per_row))
    rows = max(1, math.ceil(n / cols))
    width, height = panel_width * cols, panel_height * rows
    if margins is None:
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    else:
        left, bottom, right, top = margins
        inner_w, inner_h = panel_width - left - right, panel_height - bottom - top
        fig = Figure(figsize=(width, height))
        axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={
            "left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
            "wspace": (left + right) / inner_w, "hspace": (bottom + top) / inner_h,
        }).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def histograms(columns: Sequence[dict[str, Any]], per_row: int = 4) -> bytes:
    """Small multiples: one histogram per numeric column (`histogram` = [{lower, upper, count}])."""
    with _style():
        fig, axes = _grid(len(columns), per_row, 2.9, 1.9, (0.55, 0.3, 0.12, 0.45))
        for ax, column in zip(axes, columns, strict=True):
            bins = column["histogram"]
            lowers = np.array([b["lower"] for b in bins], dtype=float)
            widths = np.array([b["upper"] - b["lower"] for b in bins], dtype=float)
            counts = np.array([b["count"] for b in bins], dtype=float)
            ax.bar(lowers, counts, width=np.where(widths > 0, widths, 1.0), align="edge", color=BLUE,
                   edgecolor="white", linewidth=0.4)
            ax.set_title(_short(column["column_name"]), loc="left")
            ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 5))
            ax.grid(axis="x", visible=False)
        return _png(fig)


def top_values(columns: Sequence[dict[str, Any]], per_row: int = 3, top: int = 8) -> bytes:
    """Small multiples: the most frequent values of each categorical column as horizontal bars."""
    with _style():
        fig, axes = _grid(len(columns), per_row, 3.9, 0.5 + 0.22 * top, (1.4, 0.3, 0.15, 0.28))
        for ax, column in zip(axes, columns, strict=True):
            values = list(column["top_values"])[:top][::-1]
            labels = [_short("(null)" if v["value"] is None else str(v["value"]), 22) for v in values]
            counts = [v["count"] for v in values]
            bars = ax.barh(range(len(values)), counts, color=BLUE, height=0.7)
            ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=2, fontsize=7, color="#333")
            ax.set_xlim(0, max(counts, default=1) * 1.15)
            ax.set_yticks(range(len(values)), labels)
            ax.set_title(_short(column["column_name"]), loc="left")
            ax.grid(axis="y", visible=False)
        return _png(fig)


def correlation_heatmap(names: Sequence[str], matrix: np.ndarray) -> bytes:
    """Pearson correlations of numeric column pairs, -1 (blue) to 1 (red); empty cells were not computed."""
    n = len(names)
    size = min(max(3.0, 0.55 * n + 1.8), 10.0)
    with _style():
        fig = Figure(figsize=(size + 0.8, size), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
        fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if not math.isnan(matrix[i, j]):
                        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if abs(matrix[i, j]) > 0.6 else "black")
        labels = [_short(c, 18) for c in names]
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.grid(False)
        ax.set_title("Correlation (Pearson)", loc="left")
        return _png(fig)


def bias_bars(rows: Sequence[dict[str, Any]], stages: Sequence[str], limit: int = 30) -> bytes:
    """Bias metric values as horizontal bars, one panel per stage (pre-/post-training), breached bars in red and
    the allowed range drawn as grey ticks."""
    panels = []
    for stage in stages:
        mine = [r for r in rows if r["stage"] == stage and r["value"] is not None]
        # breached ones first when there are too many to draw
        mine = sorted(mine, key=lambda r: (not r["breached"],))[:limit]
        panels.append((stage, sorted(mine, key=_bias_label, reverse=True)))
    height = 0.9 + 0.2 * max((len(p[1]) for p in panels), default=1)
    with _style():
        fig, axes = _grid(len(panels), 2, 5.6, height)
        for ax, (stage, mine) in zip(axes, panels, strict=True):
            y = np.arange(len(mine))
            ax.barh(y, [r["value"] for r in mine], color=[RED if r["breached"] else BLUE for r in mine], height=0.7)
            for i, row in enumerate(mine):
                for bound in (row["threshold_min"], row["threshold_max"]):
                    if bound is not None:
                        ax.plot([bound, bound], [i - 0.42, i + 0.42], color=GREY, linewidth=1.2)
            ax.axvline(0.0, color="#555", linewidth=0.6)
            ax.set_yticks(y, [_short(_bias_label(r), 44) for r in mine])
            ax.set_title(stage.replace("_", "-"), loc="left")
            ax.grid(axis="y", visible=False)
        return _png(fig)


def _bias_label(row: dict[str, Any]) -> str:
    return f"{row['metric']} · {row['facet']}={row['facet_value']} · {row['label_value']}"


def slice_chart(column: str, rows: Sequence[dict[str, Any]], limit: int = 25) -> bytes:
    """One panel per metric: the metric on each value of `column`, flagged slices in red, the overall as a line."""
    metrics = sorted({r["metric"] for r in rows})
    with _style():
        fig, axes = _grid(len(metrics), 3, 3.9, 2.5)
        for ax, metric in zip(axes, metrics, strict=True):
            mine = [r for r in rows if r["metric"] == metric and r["value"] is not None]
            mine = sorted(mine, key=lambda r: (not r["flagged"], -(r["rows"] or 0)))[:limit]
            mine = sorted(mine, key=lambda r: str(r["slice_value"]))
            x = np.arange(len(mine))
            ax.bar(x, [r["value"] for r in mine], color=[RED if r["flagged"] else BLUE for r in mine], width=0.7)
            overall = next((r["overall"] for r in mine if r["overall"] is not None), None)
            if overall is not None:
                ax.axhline(overall, color="#333", linestyle="--", linewidth=1.0, label=f"overall {overall:.3g}")
                # above the plot area, right of the title: never over a bar
                ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)
            labels = [_short(str(r["slice_value"]), 14) for r in mine]
            ax.set_xticks(x, labels, rotation=40 if len(mine) > 4 else 0, ha="right" if len(mine) > 4 else "center")
            ax.set_title(_short(f"{metric} by {column}", 40), loc="left")
            ax.grid(axis="x", visible=False)
        return _png(fig)


def psi_heatmap(columns: Sequence[str], periods: Sequence[str], values: np.ndarray, breached: np.ndarray) -> bytes:
    """PSI per column (rows) and period (columns); breached cells are outlined and their value is bold."""
    height = min(max(2.2, 0.32 * len(columns) + 1.3), 14.0)
    width = min(max(4.5, 0.75 * len(periods) + 3.0), 13.0)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    with _style():
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(values), cmap="YlOrRd", vmin=0.0, vmax=max(0.3, top), aspect="auto")
        fig.colorbar(image, ax=ax, label="PSI", shrink=0.9)
        annotate = len(columns) * len(periods) <= 240
        for i in range(len(columns)):
            for j in range(len(periods)):
                value = values[i, j]
                if math.isnan(value):
                    continue
                if breached[i, j]:
                    ax.add_patch(_outline(j, i))
                if annotate:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            fontweight="bold" if breached[i, j] else "normal",
                            color="white" if value > 0.6 * max(0.3, top) else "black")
        ax.set_xticks(range(len(periods)), [_short(p, 12) for p in periods], rotation=30 if len(periods) > 6 else 0,
                      ha="right" if len(periods) > 6 else "center")
        ax.set_yticks(range(len(columns)), [_short(c, 24) for c in columns])
        ax.grid(False)
        ax.set_xlabel("period")
        ax.set_title("Population stability index (outlined: breached)", loc="left")
        return _png(fig)


def _outline(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.48, y - 0.48), 0.96, 0.96, fill=False, edgecolor="#222", linewidth=1.6)
