"""The load test (``make load``, ``python -m load``): players and live-feed viewers under locust, headless and
bounded, then every player's standing checked exact on every board their scores feed. ``locustfile`` is the load,
``run`` one step of it (locust as a child process, CPU measured per process, totals checked), ``__main__`` the runner
and its report."""

import sys
from pathlib import Path

# The layer's package (the game's boards and their seasons, which the totals are checked on), where Lambda and the
# tests find it: `python -m load` from the project's folder works without PYTHONPATH.
_LAYER = Path(__file__).resolve().parent.parent / "layers" / "common"
if not any(Path(entry or ".").resolve() == _LAYER for entry in sys.path):
    sys.path.append(str(_LAYER))
