"""Cold import time of every function, in fresh processes, with only what Lambda would have on the path.

The layer's requirements are installed for this machine into build/bench-layer (what `sam build` puts in the
layer, but for this CPU), boto3 (which the Lambda runtime ships, in /var/runtime) into build/bench-runtime, and each
function is imported by a new `python -S` with sys.path set like Lambda's: the function's code, the layer, the
layer's packages, then the runtime's boto3. Nothing else from the dev venv leaks in (in particular not
`cryptography`, which PyJWT would pick up and which the layer does not ship).
"""

import os
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from local.template import ResourceIdentity, Template

ROOT = Path(__file__).parent.parent
LAYER_PACKAGES = ROOT / "build" / "bench-layer"
RUNTIME_PACKAGES = ROOT / "build" / "bench-runtime"
RUNS = 9


def _install(target: Path, pip_arguments: list[str], stamp_text: str, what: str) -> None:
    """pip-install into `target`, once per change of `stamp_text` (what is asked for)."""
    stamp = target / ".requirements"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return
    print(f"==> installing {what} into {target.relative_to(ROOT)}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"]
    subprocess.run([*pip, "--target", str(target), *pip_arguments], check=True)
    stamp.write_text(stamp_text)


def install_layer_packages() -> None:
    """The layer's third-party packages, built for this machine, and the runtime's boto3 (the dev venv's version)."""
    requirements = ROOT / "layers" / "common" / "requirements.txt"
    _install(LAYER_PACKAGES, ["-r", str(requirements)], requirements.read_text(), "the layer's packages")
    boto3 = f"boto3=={metadata.version('boto3')}"
    _install(RUNTIME_PACKAGES, [boto3], boto3, "boto3, as the Lambda runtime ships it")


def import_ms(paths: list[str], module: str) -> float:
    """Milliseconds to import `module` in a fresh interpreter without site-packages."""
    probe = (
        f"import sys, time\nsys.path[:0] = {paths!r}\n"
        f"started = time.perf_counter()\nimport {module}\nprint((time.perf_counter() - started) * 1000)"
    )
    # No .pyc is written, as on Lambda, where the code folders are read-only: the project's own modules are compiled
    # at every cold start; the layer's packages were compiled by pip when installed, as `sam build` does.
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, env=environment
    )
    return float(result.stdout)


def loads_boto3(paths: list[str], module: str) -> bool:
    """Whether importing `module` imports boto3 (then its cold start pays boto3's import too)."""
    probe = f"import sys\nsys.path[:0] = {paths!r}\nimport {module}\nprint('boto3' in sys.modules)"
    result = subprocess.run([sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True)
    return result.stdout.strip() == "True"


def median_import_ms(paths: list[str], module: str) -> float:
    import_ms(paths, module)  # warm the file system cache
    return statistics.median(import_ms(paths, module) for _ in range(RUNS))


def run() -> dict[str, float]:
    """Median cold import time per function (and whether it imports boto3), plus boto3's own import for scale."""
    install_layer_packages()
    template = Template(ROOT / "template.yaml")
    # Only code paths matter here: resources that exist only in a running stack get placeholder identities.
    placeholders = {logical_id: ResourceIdentity(logical_id, {"Arn": logical_id}) for logical_id in template.resources}
    identities = placeholders | template.default_identities()
    results: dict[str, float] = {}
    for function_id in template.function_ids():
        spec = template.function(function_id, identities)
        layers = [str(layer) for layer in spec.layer_dirs]
        paths = [str(spec.code_dir), *layers, str(LAYER_PACKAGES), str(RUNTIME_PACKAGES)]
        module = spec.handler.rsplit(".", 1)[0]
        results[f"cold_import_ms_{function_id}"] = round(median_import_ms(paths, module), 1)
        results[f"cold_import_loads_boto3_{function_id}"] = int(loads_boto3(paths, module))
        boto3_note = " (imports boto3)" if results[f"cold_import_loads_boto3_{function_id}"] else ""
        print(f"  {function_id:<24} {results[f'cold_import_ms_{function_id}']:>7.1f} ms{boto3_note}", flush=True)
    boto3_paths = [path for path in sys.path if path.endswith("site-packages")]
    results["cold_import_ms_boto3_reference"] = round(median_import_ms(boto3_paths, "boto3"), 1)
    print(f"  {'boto3 (reference)':<24} {results['cold_import_ms_boto3_reference']:>7.1f} ms", flush=True)
    return results
