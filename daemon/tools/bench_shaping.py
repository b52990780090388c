"""``antiphon bench``'s figures for the reply shaping: a 32-event reply drawn with every push
on (following at 1, a pitch range, a loudness shift, the memory at 0.5) and at the defaults
(following at 1), and the memory's cost per note heard.

The reply is drawn the way :class:`~antiphon.daemon.musician.answering.reply.Reply` draws: the bias
recomputed from the onset-group state at each token, the memory blended into each draw, the
range as a mask. The memory is filled past its capacity first (phrases of 16 notes), so every
note heard also forgets the oldest phrase's notes while it holds more than its phrases.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from antiphon.daemon.codec import PITCHES

if TYPE_CHECKING:
    from antiphon.daemon.musician.answering.shaping import ReplyShaping
    from antiphon.daemon.musician.model.engine import Engine, EngineState

REPLY_EVENTS = 32
RANGE = (36, 96)
MEMORY_NOTES_TIMED = 4000
PHRASE_NOTES = 16  # the played phrases' length: the memory's phrase bound is the one reached
REPLIES = 100  # replies timed with each shaping


def _phrase_notes(seed: int) -> np.ndarray:
    """A played phrase (the bench's human-like phrase) as a notes array."""
    from antiphon.daemon.tools.probe import human_phrase

    sounding: dict[int, tuple[float, int]] = {}
    rows = []
    for timed in human_phrase(random.Random(seed), notes=16):
        m = timed.message
        if m.type == "note_on" and m.velocity > 0:
            sounding[m.note] = (timed.time_s, m.velocity)
        elif m.type in ("note_on", "note_off") and m.note in sounding:
            onset_s, velocity = sounding.pop(m.note)
            rows.append((m.note, onset_s, timed.time_s, velocity))
    return np.asarray(rows, np.float64)


def measure_shaping(engine: Engine, after_call: EngineState, seed: int) -> dict[str, Any]:
    from antiphon.daemon.musician.answering.follow import Steering
    from antiphon.daemon.musician.answering.memory import (
        CAPACITY_NOTES,
        PHRASE_BREAK_S,
        PlayerMemory,
    )
    from antiphon.daemon.musician.answering.shaping import ReplyShaping
    from antiphon.daemon.tools.bench_report import percentiles

    call = _phrase_notes(seed)
    memory = PlayerMemory()
    rng = random.Random(seed)
    time_s, pitch = 0.0, 60
    learn_us = []
    for count in range(CAPACITY_NOTES + MEMORY_NOTES_TIMED):
        time_s += rng.choice((0.12, 0.25, 0.25, 0.5, 0.75))
        if count % PHRASE_NOTES == 0:
            time_s += PHRASE_BREAK_S  # a new phrase: once full, the oldest is forgotten
        pitch = max(36, min(96, pitch + rng.choice((-5, -3, -2, -1, 1, 2, 3, 4, 7))))
        start = time.perf_counter_ns()
        memory.note_on(pitch, time_s)
        if count >= CAPACITY_NOTES:
            learn_us.append((time.perf_counter_ns() - start) / 1e3)
    vocabulary = engine.vocabulary
    all_on = ReplyShaping(call, Steering(1.0, RANGE[0], RANGE[1], 1.0, 10), 0.5, memory, vocabulary)
    defaults = ReplyShaping(call, Steering(1.0), 0.0, memory, vocabulary)
    (sample_ms, reply_ms), (_, default_ms) = _draw_replies(
        engine, after_call, (all_on, defaults), float(call[:, 2].max())
    )
    return {
        "shaped_sample_ms": percentiles(sample_ms),
        "shaped_reply32_ms": percentiles(reply_ms),
        "default_reply32_ms": percentiles(default_ms),
        "memory_note_us": percentiles(learn_us),
        "memory_notes": memory.notes,
        "memory_phrases": memory.phrases,
    }


def _draw_replies(
    engine: Engine,
    after_call: EngineState,
    shapings: tuple[ReplyShaping, ...],
    start_s: float,
) -> list[tuple[list[float], list[float]]]:
    """Draw ``REPLIES`` replies of ``REPLY_EVENTS`` tokens with each of ``shapings``, taking
    turns reply by reply so that each sees the same load of a shared machine: for each
    shaping, each draw's time and each reply's."""
    vocabulary = engine.vocabulary
    shifts_s = vocabulary.time_shifts_s
    masks = []
    for shaping in shapings:
        allowed = np.ones(vocabulary.size, bool)
        if shaping.pitch_allowed is not None:
            allowed[:PITCHES] = shaping.pitch_allowed
        masks.append(allowed)
    timings: list[tuple[list[float], list[float]]] = [([], []) for _ in shapings]
    for _ in range(REPLIES):
        for shaping, allowed, (sample_ms, reply_ms) in zip(shapings, masks, timings, strict=True):
            engine.set_state(after_call)
            state, clock_s = shaping.start, start_s
            start = time.perf_counter_ns()
            for _ in range(REPLY_EVENTS):
                drawn = time.perf_counter_ns()
                token = engine.sample(
                    allowed, bias=shaping.bias(state, clock_s), blend=shaping.blend(state)
                )
                sample_ms.append((time.perf_counter_ns() - drawn) / 1e6)
                engine.feed(token, perturb=True)
                if token < PITCHES:
                    state = shaping.after_note_on(state, token, clock_s)
                elif vocabulary.time_shift_base <= token < vocabulary.velocity_base:
                    clock_s += shifts_s[token - vocabulary.time_shift_base]
            reply_ms.append((time.perf_counter_ns() - start) / 1e6)
    return timings
