"""The turn judge's trade-off as a picture: false answers a minute against the median delay
on real ends, the judge across eagerness beside the fixed gaps, one panel per corpus
(``antiphon eval-turns --plot``, ``antiphon fit-turns --plot``). matplotlib is imported
when a plot is drawn (the ``plot`` or ``train`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PANEL_IN = 4.2  # each corpus's panel, inches square
DPI = 100


def _points(rows: dict[str, dict[str, Any]], prefix: str) -> list[tuple[str, float, float]]:
    return [
        (name[len(prefix) :], row["median_delay_s"], row["false_per_min"])
        for name, row in rows.items()
        if name.startswith(prefix) and row["median_delay_s"] is not None
    ]


def plot_trade_off(
    panels: dict[str, dict[str, dict[str, Any]]],
    marked: str | Sequence[str],
    out: Path,
    why: str = "default",
) -> None:
    """One panel per corpus (title: its name) of its rows (as ``turns_replay.trade_off``
    names them: ``auto E`` and ``gap G``), the row ``marked`` marked (its legend: ``why``);
    a sequence marks one row per panel."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes_row = pyplot.subplots(
        1, len(panels), figsize=(PANEL_IN * len(panels), PANEL_IN), dpi=DPI, squeeze=False
    )
    marks = [marked] * len(panels) if isinstance(marked, str) else list(marked)
    for axes, (title, rows), mark in zip(axes_row[0], panels.items(), marks, strict=True):
        gaps = _points(rows, "gap ")
        auto = _points(rows, "auto ")
        axes.plot([g[1] for g in gaps], [g[2] for g in gaps], "o-", color="grey", label="fixed gap")
        for label, x, y in gaps:
            axes.annotate(
                f"{label} s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        axes.plot([a[1] for a in auto], [a[2] for a in auto], "s-", color="tab:blue", label="auto")
        for label, x, y in auto:
            axes.annotate(f"e={label}", (x, y), textcoords="offset points", xytext=(4, -10),
                          fontsize=7, color="tab:blue")  # fmt: skip
        if mark in rows and rows[mark]["median_delay_s"] is not None:
            row = rows[mark]
            axes.plot([row["median_delay_s"]], [row["false_per_min"]], "*", markersize=14,
                      color="tab:red", label=f"{why} ({mark})")  # fmt: skip
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("median delay on real ends (s)")
        axes.set_ylabel("false answers / min")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out)
    pyplot.close(figure)
