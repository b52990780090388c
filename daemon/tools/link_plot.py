"""``antiphon bench --link --plot``: the player speeding up and the outgoing clock following.

One panel per ``clock_out_follow`` rate the bench ran: the player's tempo beat by beat, the
tempo the Link peer read (ten times a second) and the MIDI clock's tempo over two beats at
the listener, against seconds from the player's first beat; the window the lag is measured
over is shaded. The tempo axis spans the player's tempos and a few per cent more: the peer's
own tempo before the daemon joins it is left out of view. matplotlib is imported in
:func:`plot_player_leads` (the plot extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANEL_IN = 4.5
DPI = 110


def plot_player_leads(player_leads: dict[str, dict[str, Any]], out: Path) -> None:
    """Draw ``player_leads`` (bench_link's figures, by follow rate) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rates = [rate for rate, lead in player_leads.items() if "series" in lead]
    figure, axes_row = pyplot.subplots(
        1, len(rates), figsize=(PANEL_IN * len(rates), PANEL_IN), dpi=DPI, squeeze=False
    )
    for axes, rate in zip(axes_row[0], rates, strict=True):
        lead = player_leads[rate]
        series = lead["series"]
        axes.axvspan(*series["ramp_s"], color="0.92", label="lag measured")
        for name, style, label in (
            ("player_bpm", {"color": "black", "drawstyle": "steps-post"}, "player"),
            ("link_bpm", {"color": "tab:blue", "drawstyle": "steps-post"}, "Link peer reads"),
            ("midi_bpm", {"color": "tab:orange", "linestyle": "--"}, "MIDI clock, 2 beats"),
        ):
            points = series[name]
            axes.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)
        played = [p[1] for p in series["player_bpm"]]
        axes.set_ylim(min(played) * 0.97, max(played) * 1.04)  # not the peer's tempo before
        link = lead["lag_beats_link"]
        lag = (
            f"Link lag median {link['median']:.2f}, |p90| {link['p90_abs']:.2f} beats"
            if link
            else ""
        )
        axes.set_title(f"clock_out_follow {rate}\n{lag}", fontsize=9)
        axes.set_xlabel("seconds from the player's first beat")
        axes.set_ylabel("bpm")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(out)
    pyplot.close(figure)
