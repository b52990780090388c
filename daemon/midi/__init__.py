"""The MIDI edge: ports, port names, the input gate, what goes out, the notes sounding."""
