"""The control surface: the parameters, the control vocabulary, the mapping file, OSC."""
