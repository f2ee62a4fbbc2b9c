"""guided-audio: guided integration sessions written in YAML, rendered to exactly timed audio."""

import os

# Our matrix products are small: OpenBLAS's worker threads would spin on the core that the
# encoder or a synthesis worker needs. Set before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
