"""The model and its state: the ONNX file, the engine (session, recurrent state, sampling), the
conversation's token stream, the voices (which model plays).
"""
