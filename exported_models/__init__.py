"""The shipped models, installed as package data (found with :mod:`importlib.resources`)."""
