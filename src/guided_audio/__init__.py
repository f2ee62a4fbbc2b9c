"""guided-audio: guided integration sessions written in YAML, rendered to exactly timed audio."""

__version__ = "0.1.0"
