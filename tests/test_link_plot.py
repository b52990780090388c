"""``antiphon bench --link --plot``: one panel per follow rate with the tempos it measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from antiphon.daemon.tools.link_plot import DPI, PANEL_IN, plot_player_leads

image = pytest.importorskip("matplotlib.image")


def lead(rise: float) -> dict[str, Any]:
    player = [[0.6 * k, 100.0 + rise * k] for k in range(40)]
    return {
        "lag_beats_link": {"median": 0.5, "p90_abs": 1.0, "max": 1.5},
        "series": {
            "player_bpm": player,
            "link_bpm": [[t + 0.3, bpm] for t, bpm in player],
            "midi_bpm": [[t + 0.6, bpm] for t, bpm in player],
            "ramp_s": [6.0, 20.0],
        },
    }


def test_each_follow_rate_with_its_tempos_gets_a_panel(tmp_path: Path) -> None:
    out = tmp_path / "leads.png"
    plot_player_leads({"0.5": lead(0.25), "1": lead(0.3), "old": {"lag_beats_link": None}}, out)
    height, width = image.imread(out).shape[:2]
    assert (width, height) == (round(2 * PANEL_IN * DPI), round(PANEL_IN * DPI))
