"""Tools that measure and show the daemon: the bench, the probe, a private JACK server, plot."""
