"""``antiphon eval-clock --plot``: how the outgoing clock answered the stretch, take by take.

One panel per source: for each take the clock started in, the stretched take's outgoing
tempo over the plain take's at each beat of the music (per cent above 1: the clock's answer
to the stretch, the player's own rubato divided out), the median over the takes, and the
stretch itself (10 % over 32 beats after 16). The window the delay is fitted over is shaded.
matplotlib is imported in :func:`plot_answers` (the plot extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from antiphon.training.eval_clock import (
    ACCEL_BEATS,
    LEAD_IN_BEATS,
    LEAD_OUT_BEATS,
    WINDOW_FROM_BEATS,
    stretch,
)

PANEL_IN = 4.5
DPI = 110


def plot_answers(report: dict[str, Any], out: Path) -> None:
    """Draw eval-clock's ``report`` (its JSON: a summary and rows per source) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    sources = [name for name, part in report.items() if isinstance(part, dict)]
    figure, axes_row = pyplot.subplots(
        1, len(sources), figsize=(PANEL_IN * 1.4 * len(sources), PANEL_IN), dpi=DPI,
        squeeze=False, sharey=True,
    )  # fmt: skip
    span = LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS
    beats = np.arange(span)
    stretch_beats, rise, _ = stretch(1.0)  # a beat of 1 s: its times are beats
    for axes, name in zip(axes_row[0], sources, strict=True):
        part = report[name]
        answers = np.array(
            [
                [np.nan if r is None else 100.0 * (r - 1.0) for r in row["ratio_by_beat"]]
                for row in part["rows"]
                if row["heard"]
            ]
        ).reshape(-1, span)
        axes.axvspan(LEAD_IN_BEATS + WINDOW_FROM_BEATS, span, color="0.93", label="delay fitted")
        for answer in answers:
            axes.plot(beats, answer, color="tab:blue", alpha=0.25, linewidth=0.8)
        if len(answers):
            median = [_median(column) for column in answers.T]
            axes.plot(beats, median, color="tab:blue", linewidth=2.0, label="median of the takes")
        axes.plot(stretch_beats, 100.0 * rise, color="black", linewidth=2.0, label="the stretch")
        delay = part.get("delay_beats_median")
        shown = "no take" if delay is None else f"delay median {delay:.1f} beats"
        axes.set_title(f"{name}: {len(answers)} of {part['takes']} takes, {shown}", fontsize=9)
        axes.set_xlabel("beats of the music")
        axes.set_xlim(0, span)
        axes.set_ylim(-6.0, 16.0)
        axes.grid(alpha=0.3)
    axes_row[0][0].set_ylabel("outgoing tempo, stretched take over plain (% above)")
    axes_row[0][0].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"antiphon eval-clock, clock_out_follow {report['follow']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out)
    pyplot.close(figure)


def _median(column: np.ndarray) -> float:
    """The median of the takes' answers at one beat; NaN where no clock ran yet."""
    known = column[np.isfinite(column)]
    return float(np.median(known)) if len(known) else float("nan")
