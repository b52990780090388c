"""Antiphon's runtime: live MIDI in, a stateful ONNX note model, call and response out."""
