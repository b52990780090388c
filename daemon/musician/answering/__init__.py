"""Answering a call: the reply drawn ahead, what pushes its draws (following the call, the player's
memory, shaping) and the reply made before the deadline.
"""
