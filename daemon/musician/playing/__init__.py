"""Playing: the performer's thread and its controls, notes placed on the beat's grid, and the duet
part played along.
"""
