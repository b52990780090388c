"""Hearing the player: when a call is over (turns, phrase), the beat, the key, the shape and motion
of a phrase.
"""
