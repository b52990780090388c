"""``antiphon fit-turns``: the hazard's logistic fit, and the leave-one-corpus-out protocol on
two tiny corpora made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from antiphon.daemon.cli import main
from antiphon.daemon.codec import CodecConfig
from antiphon.daemon.musician.hearing.turns import CUES
from antiphon.daemon.tools.turns_replay import Judged, trade_off
from antiphon.training.corpus import Performance, Source, write_corpus
from antiphon.training.turns_fit import agreeing_cues, end_association, fit_logistic, slack


def test_the_logistic_fit_finds_the_weights_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack((np.ones(20000), rng.normal(size=(20000, 2))))
    truth = np.array([-0.5, 1.5, -2.0])
    y = (rng.random(20000) < 1.0 / (1.0 + np.exp(-x @ truth))).astype(np.float64)
    beta = fit_logistic(x, y, np.full(len(y), 1.0 / len(y)), ridge=0.0)
    assert beta == pytest.approx(truth, abs=0.1)


def silences(seed: int, sign: float) -> list[Judged]:
    """Breaths and ends where the first cue is higher at ends, and the second cue is higher
    at ends when ``sign`` is 1 and lower when it is -1; the others are noise."""
    rng = np.random.default_rng(seed)
    found = []
    for k in range(400):
        end = k % 4 == 0
        cues = rng.normal(size=len(CUES))
        cues[0] += 1.0 if end else 0.0
        cues[1] += sign if end else 0.0
        found.append(Judged(float(k), 2.0 if end else 0.3, cues, 0.2, 0.25, 0.8))
    return found


def test_a_cue_that_tells_ends_from_breaths_the_other_way_elsewhere_is_left_out() -> None:
    agree, flip = silences(0, 1.0), silences(1, -1.0)
    areas = end_association(agree)
    assert areas[0] > 0.65 and areas[1] > 0.65
    assert end_association(flip)[1] < 0.35
    assert {0, 1} <= set(agreeing_cues({"a": agree, "b": silences(2, 1.0)}))
    chosen = agreeing_cues({"a": agree, "b": flip})
    assert 0 in chosen and 1 not in chosen


def phrases(seed: int, breath_s: float, end_s: float) -> np.ndarray:
    """Phrases of eight notes, a breath inside each, the last note held, then an end."""
    rng = np.random.default_rng(seed)
    rows, time_s = [], 0.0
    for _ in range(12):
        for k in range(8):
            length_s = 0.5 if k == 7 else 0.15
            rows.append((60 + rng.integers(0, 12), time_s, time_s + length_s, 80))
            time_s += length_s + (breath_s if k == 3 else 0.05)
        time_s += end_s
    return np.asarray(rows, np.float32)


def corpus(root: Path, name: str, breath_s: float, end_s: float) -> Path:
    items = []
    for i in range(6):
        source = Source(f"{name}/{i}", f"{name}/{i}", "folder", f"{name}/{i}.mid")
        items.append(Performance(source, phrases(i, breath_s, end_s)))
    write_corpus(root / name, items, CodecConfig(), seed=0, validation=0.34, test=0.34)
    return root / name


def test_each_corpus_is_reported_only_when_left_out_of_the_fit(tmp_path: Path) -> None:
    slow = corpus(tmp_path, "slow", breath_s=0.45, end_s=2.0)
    quick = corpus(tmp_path, "quick", breath_s=0.2, end_s=1.2)
    out = tmp_path / "fit.json"
    assert main(["fit-turns", f"slow={slow}", f"quick={quick}", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["left_out"]) == {"slow", "quick"}
    assert results["left_out"]["slow"]["fitted_on"] == ["quick"]
    quick = results["left_out"]["quick"]
    assert quick["all"]["performances"] == 6 > quick["test"]["performances"]
    rows = quick["test"]["rows"]
    assert {"auto 0", "auto 0.5", "auto 1", "gap 0.15", "gap 0.35", "gap 0.8"} <= set(rows)
    assert len(results["shipped"]["hazard"]["cues"]) == len(CUES)


def test_one_corpus_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit-turns", "only=/nowhere"]) == 2
    assert capsys.readouterr().err.strip().startswith("antiphon fit-turns:")


def test_the_slack_is_the_nearer_of_the_two_edges_of_the_goal() -> None:
    def silence(length_s: float, wait_s: float) -> Judged:
        return Judged(0.0, length_s, np.zeros(len(CUES)), 0.5, 0.25, wait_s)

    def slack_of(judged: list[Judged]) -> float:
        return slack(trade_off({0.4: judged}, minutes=1.0), "auto 0.4")

    ends = [silence(2.0, 0.24)] * 3 + [silence(2.0, 0.8)]  # 3 of 4 answered quickly: +0.25
    breaths = [silence(0.5, 0.24), silence(0.4, 0.8)]  # 1 false, the 0.35 s gap's 2: +0.5
    assert slack_of(ends + breaths) == pytest.approx(0.25)
    slow = [silence(2.0, 0.8)] * 3 + [silence(2.0, 0.24)]  # 1 of 4 quickly: -0.25
    assert slack_of(slow + breaths) == pytest.approx(-0.25)
    spendthrift = [silence(0.5, 0.24), silence(0.4, 0.24), silence(0.3, 0.24)]  # 3 against 2
    assert slack_of(ends + spendthrift) == pytest.approx(-0.5)
