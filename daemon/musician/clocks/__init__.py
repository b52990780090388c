"""Clocks: a DAW's MIDI clock, Ableton Link, the beat a reply keeps, and the clock Antiphon sends
out.
"""
