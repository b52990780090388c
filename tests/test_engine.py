"""The engine on the shipped model: determinism, state handling, masks, temperature, noise."""

from __future__ import annotations

import json
from pathlib import Path

import antiphon.daemon.musician.model.engine
import numpy as np
import pytest
from antiphon.daemon.codec import Note, TokenKind, encode_notes
from antiphon.daemon.musician.model.engine import Engine, EngineError
from antiphon.daemon.musician.model.model_file import ModelError, load_model, resolve_model_path

MODEL = Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx"


@pytest.fixture(scope="module")
def loaded() -> Engine:
    return Engine(MODEL)


@pytest.fixture
def engine(loaded: Engine) -> Engine:
    loaded.reset()
    loaded.reseed(0)
    loaded.temperature, loaded.noise = 1.0, 0.0
    return loaded


def call_tokens(engine: Engine) -> list[int]:
    notes = [Note(60 + 2 * i, 0.25 * i, 0.25 * i + 0.2, 60 + 5 * i) for i in range(8)]
    return [int(t) for t in encode_notes(notes, engine.vocabulary)]


def primed(engine: Engine) -> antiphon.daemon.musician.model.engine.EngineState:
    for token in call_tokens(engine):
        engine.feed(token)
    return engine.get_state()


def generate(engine: Engine, count: int) -> list[int]:
    tokens = []
    for _ in range(count):
        token = engine.sample()
        engine.feed(token, perturb=True)
        tokens.append(token)
    return tokens


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


# The model file ------------------------------------------------------------------------------


def test_model_file_metadata_matches_its_graph() -> None:
    session, info = load_model(MODEL)
    inputs = {arg.name: arg.shape for arg in session.get_inputs()}
    assert info.vocabulary.size == session.get_outputs()[0].shape[1]
    assert inputs["h"][0] == info.layers and inputs["h"][2] == info.hidden
    assert info.architecture == "lstm"


@pytest.mark.parametrize(
    "content", [b"", b"definitely not a protobuf \x00\xff" * 10], ids=["empty", "garbage"]
)
def test_unreadable_model_is_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError) as caught:
        Engine(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Engine(tmp_path / "nothing.onnx")


def _rewrite_metadata(tmp_path: Path, change: dict[str, str | None]) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODEL))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in change.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "changed.onnx"
    onnx.save(model, str(path))
    return path


def test_model_without_antiphon_metadata_is_refused(tmp_path: Path) -> None:
    path = _rewrite_metadata(tmp_path, {"antiphon.format": None})
    with pytest.raises(ModelError, match="not an Antiphon model"):
        Engine(path)


def test_model_whose_shapes_disagree_with_metadata_is_refused(tmp_path: Path) -> None:
    _, info = load_model(MODEL)
    model = {
        "architecture": "lstm",
        "vocab_size": info.vocabulary.size,
        "embedding": info.embedding,
        "hidden": info.hidden * 2,
        "layers": info.layers,
    }
    path = _rewrite_metadata(tmp_path, {"antiphon.model": json.dumps(model)})
    with pytest.raises(ModelError, match="shape"):
        Engine(path)


def test_model_whose_codec_disagrees_with_vocab_size_is_refused(tmp_path: Path) -> None:
    path = _rewrite_metadata(tmp_path, {"antiphon.codec": json.dumps({"velocity_bins": 16})})
    with pytest.raises(ModelError, match="vocab_size"):
        Engine(path)


def test_model_names_outside_the_models_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "duo.onnx").write_bytes(b"x")
    (tmp_path / "secret.onnx").write_bytes(b"x")
    folders = [tmp_path / "models"]
    assert resolve_model_path("duo", folders) == tmp_path / "models" / "duo.onnx"
    with pytest.raises(ModelError, match="outside"):
        resolve_model_path("../secret.onnx", folders)
    with pytest.raises(ModelError, match="no model"):
        resolve_model_path("absent", folders)


def test_a_model_is_looked_for_in_each_folder_in_turn(tmp_path: Path) -> None:
    installed, user = tmp_path / "installed", tmp_path / "user"
    for folder in (installed, user):
        folder.mkdir()
        (folder / "both.onnx").write_bytes(b"x")
    (user / "mine.onnx").write_bytes(b"x")
    assert resolve_model_path("both", [installed, user]) == installed / "both.onnx"
    assert resolve_model_path("mine.onnx", [installed, user]) == user / "mine.onnx"
    with pytest.raises(ModelError, match=r"no model theirs\.onnx in .*installed or .*user"):
        resolve_model_path("theirs", [installed, user])


# State -----------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_tokens_and_another_seed_does_not(engine: Engine) -> None:
    start = primed(engine)
    first = generate(engine, 40)
    engine.set_state(start)
    engine.reseed(0)
    assert generate(engine, 40) == first
    engine.set_state(start)
    engine.reseed(1)
    assert generate(engine, 40) != first


def test_feeding_the_same_tokens_from_reset_gives_the_same_logits(engine: Engine) -> None:
    primed(engine)
    first = engine.logits.copy()
    engine.reset()
    assert not engine.ready
    primed(engine)
    assert np.array_equal(engine.logits, first)


def test_state_is_carried_from_token_to_token(engine: Engine) -> None:
    engine.feed(engine.vocabulary.note_on(60))
    after_one = engine.logits.copy()
    engine.reset()
    engine.feed(engine.vocabulary.note_on(72))
    engine.feed(engine.vocabulary.note_on(60))
    assert not np.array_equal(engine.logits, after_one)


def test_get_and_set_state_round_trip(engine: Engine) -> None:
    saved = primed(engine)
    tokens = generate(engine, 10)
    after = engine.logits.copy()
    engine.set_state(saved)
    assert np.array_equal(engine.logits, saved.logits)
    for token in tokens:
        engine.feed(token)
    assert np.array_equal(engine.logits, after)
    saved.h[...] = 0.0  # the engine holds a copy, not the caller's arrays
    assert np.array_equal(engine.logits, after)


def test_sampling_does_not_advance_the_state(engine: Engine) -> None:
    primed(engine)
    before = engine.get_state()
    for _ in range(20):
        engine.sample()
    assert np.array_equal(engine.get_state().h, before.h)
    assert np.array_equal(engine.logits, before.logits)


def test_nothing_to_sample_after_reset(engine: Engine) -> None:
    primed(engine)
    engine.reset()
    with pytest.raises(EngineError, match="nothing has been fed"):
        engine.sample()


def test_feed_refuses_a_token_outside_the_vocabulary(engine: Engine) -> None:
    with pytest.raises(EngineError):
        engine.feed(engine.vocabulary.size)


# A heard event's tokens in one run --------------------------------------------------------------

FP32 = MODEL.with_name("antiphon-piano-fp32.onnx")


def _after_runs(engine: Engine, tokens: list[int], run: int) -> np.ndarray:
    """The logits after ``tokens`` fed from reset ``run`` at a time (1: :meth:`feed`)."""
    engine.reset()
    for start in range(0, len(tokens), run):
        if run == 1:
            engine.feed(tokens[start])
        else:
            engine.feed_run(tokens[start : start + run])
    return engine.get_state()


def test_a_run_of_one_token_is_feed_bit_for_bit(engine: Engine) -> None:
    tokens = call_tokens(engine)
    one_by_one = _after_runs(engine, tokens, 1)
    engine.reset()
    for token in tokens:
        engine.feed_run([token])
    after = engine.get_state()
    assert np.array_equal(after.logits, one_by_one.logits) and np.array_equal(after.h, one_by_one.h)


def test_runs_give_the_state_of_one_by_one_in_float32_and_near_it_in_int8(engine: Engine) -> None:
    fp32 = Engine(FP32)
    tokens = call_tokens(engine)
    for run in (2, 3, 7):  # 7: longer than one bound run, split
        exact, ran = _after_runs(fp32, tokens, 1), _after_runs(fp32, tokens, run)
        assert np.abs(ran.logits - exact.logits).max() <= 1e-4
        assert np.abs(ran.h - exact.h).max() <= 1e-5
        exact, ran = _after_runs(engine, tokens, 1), _after_runs(engine, tokens, run)
        # int8: a run's inputs are scaled together, so the logits move a little, not much
        assert 0.0 < np.abs(ran.logits - exact.logits).max() <= 0.5
        assert np.corrcoef(ran.logits, exact.logits)[0, 1] > 0.999


def test_a_run_refuses_a_token_outside_the_vocabulary_before_feeding_any(engine: Engine) -> None:
    primed(engine)
    before = engine.get_state()
    with pytest.raises(EngineError):
        engine.feed_run([engine.vocabulary.note_on(60), engine.vocabulary.size])
    assert np.array_equal(engine.get_state().h, before.h)


def test_a_format_1_file_is_still_played_one_token_a_run(engine: Engine, tmp_path: Path) -> None:
    """A file exported before format 2 (rewritten back here: the step graph's token [B])."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODEL))
    graph = model.graph
    gather = next(n for n in graph.node if n.op_type == "Gather" and "token" in n.input)
    graph.node.insert(0, onnx.helper.make_node("Unsqueeze", ["token", "axes1"], ["token_seq"]))
    graph.initializer.append(onnx.helper.make_tensor("axes1", onnx.TensorProto.INT64, [1], [1]))
    gather.input[list(gather.input).index("token")] = "token_seq"
    del graph.input[0].type.tensor_type.shape.dim[1:]
    next(p for p in model.metadata_props if p.key == "antiphon.format").value = "1"
    path = tmp_path / "format1.onnx"
    onnx.save(model, str(path))
    old = Engine(path)
    assert not old.info.feeds_sequences and engine.info.feeds_sequences
    tokens = call_tokens(engine)
    expected = _after_runs(engine, tokens, 1)
    assert np.array_equal(_after_runs(old, tokens, 3).logits, expected.logits)


def test_a_model_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = _rewrite_metadata(tmp_path, {"antiphon.format": "3"})
    with pytest.raises(ModelError, match="model format '3'"):
        Engine(path)


# Sampling -----------------------------------------------------------------------------------


def test_mask_restricts_what_is_sampled(engine: Engine) -> None:
    primed(engine)
    allowed = np.zeros(engine.vocabulary.size, bool)
    allowed[engine.vocabulary.time_shift_base : engine.vocabulary.velocity_base] = True
    kinds = {engine.vocabulary.kind(engine.sample(allowed)) for _ in range(300)}
    assert kinds == {TokenKind.TIME_SHIFT}
    with pytest.raises(EngineError, match="masked"):
        engine.sample(np.zeros(engine.vocabulary.size, bool))


def test_samples_follow_the_model_distribution(engine: Engine) -> None:
    primed(engine)
    allowed = np.zeros(engine.vocabulary.size, bool)
    choices = [engine.vocabulary.note_on(p) for p in (55, 60, 67)]
    allowed[choices] = True
    expected = engine.probabilities(allowed, temperature=0.1)[choices]
    draws = 3000
    counts = np.array([0, 0, 0])
    for _ in range(draws):
        counts[choices.index(engine.sample(allowed, temperature=0.1))] += 1
    spread = np.sqrt(draws * expected * (1 - expected))
    assert np.all(np.abs(counts - draws * expected) <= 4 * spread + 1)


def reference_draw(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float,
    allowed: np.ndarray | None,
    bias: np.ndarray | None,
) -> int:
    """The draw written plainly: tempered logits, bias, mask, softmax, inverse CDF."""
    weights = np.multiply(logits, 1.0 / temperature, out=np.zeros(logits.shape, np.float64))
    if bias is not None:
        weights += bias
    if allowed is not None:
        weights[~allowed] = -np.inf
    weights = np.exp(weights - weights.max())
    cumulative = np.cumsum(weights)
    token = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(token, len(weights) - 1)


def test_draws_are_bit_for_bit_the_plain_formula(engine: Engine) -> None:
    """The engine's draw (fewer passes, the uniform from the raw stream) picks exactly the
    token the plain formula picks from the same state and random stream, at every
    temperature, with and without a bias and a mask."""
    primed(engine)
    size = engine.vocabulary.size
    shapes = np.random.default_rng(7)
    for draw in range(600):
        temperature = (1.0, 0.7, 1.3, 0.35, 2.5)[draw % 5]
        allowed = shapes.random(size) < 0.6 if draw % 3 else None
        if allowed is not None:
            allowed[shapes.integers(size)] = True
        bias = shapes.normal(0.0, 3.0, size) if draw % 4 else None
        reference_rng = np.random.Generator(np.random.PCG64())
        reference_rng.bit_generator.state = engine.rng.bit_generator.state
        expected = reference_draw(engine.logits, reference_rng, temperature, allowed, bias)
        token = engine.sample(allowed, temperature, bias)
        assert token == expected
        assert engine.rng.bit_generator.state == reference_rng.bit_generator.state
        engine.feed(token, perturb=True)


def test_entropy_grows_with_temperature(engine: Engine) -> None:
    start = primed(engine)
    means = []
    for temperature in (0.5, 1.0, 2.0):
        entropies = []
        for seed in range(4):
            engine.set_state(start)
            engine.reseed(seed)
            engine.temperature = temperature
            for _ in range(24):
                entropies.append(entropy(engine.probabilities()))
                engine.feed(engine.sample(), perturb=True)
        means.append(float(np.mean(entropies)))
    assert means[0] < means[1] < means[2]


# Noise --------------------------------------------------------------------------------------


def test_noise_zero_is_bit_identical_to_the_noise_free_engine(engine: Engine) -> None:
    start = primed(engine)
    plain = []
    for _ in range(30):
        token = engine.sample()
        engine.feed(token)  # no perturbation asked at all
        plain.append((token, engine.logits.tobytes()))
    engine.set_state(start)
    engine.reseed(0)
    engine.noise = 0.0
    noisy_path = []
    for _ in range(30):
        token = engine.sample()
        engine.feed(token, perturb=True)
        noisy_path.append((token, engine.logits.tobytes()))
    assert noisy_path == plain
    fresh = Engine(MODEL, seed=0)
    primed(fresh)
    generate(fresh, 30)
    assert fresh.rng.random() == engine.rng.random()  # the same draws were made


def test_heard_events_are_never_perturbed(engine: Engine) -> None:
    clean = primed(engine).logits
    engine.reset()
    engine.noise = 1.0
    assert np.array_equal(primed(engine).logits, clean)


def test_distance_from_the_noise_free_reply_grows_with_noise(engine: Engine) -> None:
    start = primed(engine)

    def reply(seed: int, noise: float) -> np.ndarray:
        engine.set_state(start)
        engine.reseed(seed)
        engine.noise = noise
        return np.array(generate(engine, 40))

    distances = []
    for noise in (0.0, 0.25, 0.5, 1.0):
        distances.append(np.mean([np.mean(reply(s, 0.0) != reply(s, noise)) for s in range(8)]))
    assert distances[0] == 0.0
    assert distances[0] < distances[1] < distances[2] < distances[3]


def test_a_jump_picks_another_token_of_the_same_kind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        antiphon.daemon.musician.model.engine, "JUMP_RATE_AT_FULL", 1.0
    )  # every draw jumps
    start = primed(engine)
    vocabulary = engine.vocabulary
    for seed in range(40):
        engine.set_state(start)
        engine.reseed(seed)
        engine.noise = 0.0
        choice = engine.sample()
        engine.reseed(seed)
        engine.noise = 1.0
        jump = engine.sample()
        assert jump != choice
        assert vocabulary.kind(jump) == vocabulary.kind(choice)


def test_state_perturbation_scales_with_noise(engine: Engine) -> None:
    start = primed(engine)
    token = engine.vocabulary.note_on(64)
    engine.feed(token)
    clean = engine.get_state().h
    moved = []
    for noise in (0.1, 0.4, 1.0):
        engine.set_state(start)
        engine.reseed(3)
        engine.noise = noise
        engine.feed(token, perturb=True)
        moved.append(float(np.abs(engine.get_state().h - clean).mean()))
    assert 0.0 < moved[0] < moved[1] < moved[2]
