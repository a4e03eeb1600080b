"""Small models w2s can build for itself (tests, the demo) without a model hub.

``ZOO_DIR`` is where the shipped models live; ``zoo:ROLE`` references resolve there
(:mod:`w2s.models.resolve`). Only the CLI and the demo import the training script (``build``).
"""

from w2s.models.resolve import ZOO_DIR

__all__ = ["ZOO_DIR"]
