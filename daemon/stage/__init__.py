"""The daemon on stage: the process, its logs, systemd, the recording, the status view."""
