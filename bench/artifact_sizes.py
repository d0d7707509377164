"""Unzipped size of what `sam build` makes for Lambda, as `make template` measured it.

`make template` builds (arm64, no Docker) and runs tests/build over .aws-sam/build, which write each function's and
the layer's unzipped size to build/artifact-sizes.json; this part reads that file (it builds nothing itself: sam and
its tools venv are `make template`'s business) and reports it as `artifact_mb_<LogicalId>` figures.
"""

import json

from bench import ROOT

SIZES_FILE = ROOT / "build" / "artifact-sizes.json"
PREFIX = "artifact_mb_"  # + a logical id (letters and digits only, so no other figure below can look like one)
LARGEST_WITH_LAYERS = "artifact_mb_largest_with_layers"
LIMIT = "artifact_unzipped_limit_mb"
ALLOWANCE = "artifact_external_layer_allowance_mb"


def run() -> dict[str, float]:
    """Each artifact's unzipped MB, the largest function with its layers, and Lambda's limit; {} without a build."""
    # The file is as fresh as the last `make template`: the tests that write it fail on a build older than the code.
    if not SIZES_FILE.is_file():
        print(f"  no {SIZES_FILE.relative_to(ROOT)}: `make template` writes it (sam build, then tests/build)")
        return {}
    sizes = json.loads(SIZES_FILE.read_text())
    results: dict[str, float] = {
        f"{PREFIX}{name}": float(entry["mb"])
        for section in ("layers", "functions")
        for name, entry in sorted(sizes[section].items())
    }
    results[LARGEST_WITH_LAYERS] = max(float(function["with_layers_mb"]) for function in sizes["functions"].values())
    results[LIMIT] = float(sizes["limit_mb"])
    results[ALLOWANCE] = float(sizes["external_layer_allowance_mb"])
    return results
