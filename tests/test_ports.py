"""The pure parts of the MIDI port layer: port name matching and the names of our ports."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from antiphon.daemon.midi.port_names import (
    PortError,
    PortNotFound,
    PortSetupError,
    auto_order,
    check_api,
    match_port,
    no_midi_system,
    own_port_clash,
    pick_api,
    port_listing,
    virtual_port_names,
)
from antiphon.daemon.midi.ports import choose_api, compiled_apis
from antiphon.daemon.tools.probe import human_phrase, sounding_notes
from hypothesis import given
from hypothesis import strategies as st

DEVICES = [
    "Arturia KeyStep 37:Arturia KeyStep 37 MIDI 1 24:0",
    "Midi Through:Midi Through Port-0 14:0",
    "nanoKONTROL2:nanoKONTROL2 MIDI 1 28:0",
]


def test_part_of_a_name_finds_the_device_in_any_case() -> None:
    assert match_port("keystep", DEVICES) == DEVICES[0]
    assert match_port("KONTROL", DEVICES) == DEVICES[2]


def test_ambiguous_part_lists_every_candidate_on_one_line() -> None:
    with pytest.raises(PortSetupError) as caught:  # the config must say more: no retry helps
        match_port("MIDI", DEVICES, "input")
    message = str(caught.value)
    assert "\n" not in message
    assert all(f"'{name}'" in message for name in DEVICES)
    assert "several MIDI inputs" in message


def test_no_match_names_the_ports_there_are() -> None:
    with pytest.raises(PortNotFound, match=r"no MIDI output matches 'Launchpad'.*nanoKONTROL2"):
        match_port("Launchpad", DEVICES, "output")


def test_no_ports_at_all_says_none() -> None:
    with pytest.raises(PortError, match=r"there are: none"):
        match_port("KeyStep", [])


def test_exact_name_wins_over_longer_names_containing_it() -> None:
    names = ["Synth:in", "Synth:in 2", "Synth:in 3"]
    assert match_port("synth:IN", names) == "Synth:in"


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True), st.data())
def test_a_full_name_always_finds_itself_or_is_refused(
    names: list[str], data: st.DataObject
) -> None:
    wanted = data.draw(st.sampled_from(names))
    clashing = [n for n in names if n.casefold() == wanted.casefold()]
    if len(clashing) == 1:
        assert match_port(wanted, names) == wanted
    else:  # names equal but for case: a full name cannot tell them apart
        with pytest.raises(PortError):
            match_port(wanted, names)


def test_virtual_ports_are_named_after_the_port_name_setting() -> None:
    jack = virtual_port_names("jack", "Antiphon")
    assert (jack.input_listed, jack.output_listed) == ("Antiphon-in:in", "Antiphon-out:out")
    alsa = virtual_port_names("alsa", "Stage")
    assert (alsa.input_client, alsa.input_port) == ("Stage-in", "in")
    core = virtual_port_names("coremidi", "Antiphon")
    assert (core.input_listed, core.output_listed) == ("Antiphon-in", "Antiphon-out")


def test_own_ports_are_recognised_with_or_without_alsa_numbers() -> None:
    names = virtual_port_names("alsa", "Antiphon")
    assert names.is_own("Antiphon-in:in 128:0")
    assert names.is_own("Antiphon-out:out")
    assert not names.is_own("Antiphon-inside:in 130:0")
    assert not names.is_own("Arturia KeyStep 37:Arturia KeyStep 37 MIDI 1 24:0")


def test_generated_phrases_release_every_note_they_play() -> None:
    for seed in range(20):
        phrase = human_phrase(random.Random(seed))
        assert sounding_notes(phrase) == set()
        times = [t.time_s for t in phrase]
        assert times == sorted(times)
        ons = [t for t in phrase if t.message.type == "note_on" and t.message.velocity > 0]
        assert len(ons) == 11


@pytest.mark.skipif("jack" not in compiled_apis(), reason="python-rtmidi built without JACK")
def test_without_a_jack_server_the_error_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "antiphon-no-such-server")
    with pytest.raises(PortError) as caught:
        choose_api("jack")
    assert str(caught.value) == "no JACK server named 'antiphon-no-such-server' running"


def test_an_unknown_midi_system_is_refused() -> None:
    with pytest.raises(PortError, match="unknown MIDI system 'oss'"):
        choose_api("oss")


def test_the_naming_module_never_loads_rtmidi() -> None:
    code = "import sys, antiphon.daemon.midi.port_names; print('rtmidi' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_auto_tries_the_systems_of_each_platform_in_order() -> None:
    assert auto_order(["alsa", "jack"], "linux") == ["alsa", "jack"]
    assert auto_order(["coremidi", "jack"], "darwin") == ["coremidi", "jack"]
    assert auto_order(["windows"], "win32") == ["windows"]
    assert auto_order(["jack"], "freebsd14") == ["jack"]  # elsewhere: what the build has


def test_no_midi_system_gives_each_reason_and_what_to_do_in_one_line() -> None:
    error = no_midi_system(["no ALSA sequencer (/dev/snd/seq missing)", "no JACK server running"])
    message = str(error)
    assert type(error) is PortError  # it may come up by itself: worth a retry
    assert "\n" not in message
    assert message.startswith("no ALSA sequencer (/dev/snd/seq missing) and no JACK server")
    assert "modprobe snd-seq" in message


def test_a_system_unknown_or_not_built_in_is_a_setup_error() -> None:
    check_api("jack", ["alsa", "jack"])
    with pytest.raises(PortSetupError, match="unknown MIDI system 'oss'"):
        check_api("oss", ["alsa", "jack"])
    with pytest.raises(PortSetupError, match="built without CoreMIDI support"):
        check_api("coremidi", ["alsa", "jack"])


def test_a_port_of_ours_already_there_is_refused_naming_it() -> None:
    names = virtual_port_names("alsa", "Antiphon")
    assert own_port_clash(names, DEVICES) is None
    clash = own_port_clash(names, [*DEVICES, "Antiphon-out:out 129:0"])
    assert clash is not None and "'Antiphon-out:out 129:0' already exists" in str(clash)


def test_the_listing_shows_both_directions_and_our_own_port_names() -> None:
    text = port_listing("jack", ["system:capture_1"], [], "Stage")
    assert text.splitlines() == [
        "JACK:",
        "  inputs (what --input-port accepts):",
        "    system:capture_1",
        "  outputs (what --output-port accepts):",
        "    (none)",
        "  antiphon run makes the virtual ports 'Stage-in:in' (play into it) and 'Stage-out:out'"
        " (replies)",
    ]
    assert "virtual ports" not in port_listing("windows", [], ["loopMIDI Port"], "Stage")


def test_auto_asks_each_system_in_order_and_stops_at_the_first_that_works() -> None:
    asked: list[str] = []

    def unavailable(api: str) -> str | None:
        asked.append(api)
        return {"alsa": "no ALSA sequencer"}.get(api)

    assert pick_api("auto", ["alsa", "jack"], unavailable, "linux") == "jack"
    assert asked == ["alsa", "jack"]
    asked.clear()
    assert pick_api("auto", ["alsa", "jack"], lambda api: None, "linux") == "alsa"
    assert pick_api("jack", ["alsa", "jack"], unavailable, "linux") == "jack"
    assert asked == ["jack"]  # a system asked for by name is the only one asked


def test_a_system_asked_for_that_does_not_work_is_its_own_reason() -> None:
    with pytest.raises(PortError) as caught:
        pick_api("alsa", ["alsa", "jack"], lambda api: f"no {api}", "linux")
    assert str(caught.value) == "no alsa" and type(caught.value) is PortError
    with pytest.raises(PortError) as none_works:
        pick_api("auto", ["jack"], lambda api: f"no {api}", "linux")
    assert str(none_works.value).startswith(
        "this python-rtmidi was built without ALSA support and no jack: "
    )
