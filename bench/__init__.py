"""Benchmarks: `make bench` runs them and writes bench/results.json and BENCHMARKS.md."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The layer's package, where `make bench` (PYTHONPATH) and Lambda (the layer) put it: `python -m bench` from the
# project's folder works without PYTHONPATH too.
if not any(Path(entry or ".").resolve() == ROOT / "layers" / "common" for entry in sys.path):
    sys.path.append(str(ROOT / "layers" / "common"))


def template_game() -> str:
    """The GAME document template.yaml gives every function: the game's action types and boards."""
    from local.template import Template

    variables = Template(ROOT / "template.yaml").document["Globals"]["Function"]["Environment"]["Variables"]
    return str(variables["GAME"])
