"""Cold import time of every function, in fresh processes, with only what Lambda would have on the path: with the
layer's bytecode, as `sam build` now ships it, and without, as it shipped before.

`sam build` builds the layer for arm64 (layers/common/Makefile: the pinned wheels, the leaderboard package, then
unchecked-hash bytecode for every module), and its compiled extensions cannot load on this machine. So each layer
built by a Makefile is built again for this machine's CPU by the same Makefile (only PLATFORMS, on make's command
line, differs) into build/bench-layers/<LogicalId>: the same pins, the same package, the same bytecode. When
.aws-sam/build holds the layer, the twin's .pyc files are compared with the artifact's: they are byte for byte the
same (the Makefile records /opt/python's file names, not the build folder's), so the bytecode measured is the
bytecode shipped; only the extension modules differ. A copy of the twin without any bytecode is the layer as the
python3.13 builder shipped it: on Lambda, /opt is read-only, so CPython then compiles every module at every cold start
and keeps nothing. boto3, which the Lambda runtime ships (in /var/runtime), is installed into build/bench-runtime.

Each function's code is copied without caches (what sam build ships for it; tests/build checks that) and imported by
a new `python -S` with sys.path set like Lambda's: the function's code, the layer, then the runtime's boto3. Nothing
else from the dev venv leaks in (in particular not `cryptography`, which PyJWT would pick up and which the layer does
not ship). The two layers are measured alternately, run by run. What this does not measure: an arm64 CPU's speed,
Lambda's disk, the runtime's own start.
"""

import filecmp
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from local.template import ResourceIdentity, Template

ROOT = Path(__file__).parent.parent
LAYER_TWINS = ROOT / "build" / "bench-layers"
RUNTIME_PACKAGES = ROOT / "build" / "bench-runtime"
SAM_BUILD = ROOT / ".aws-sam" / "build"
RUNS = 9
# The two layers each function is imported with, in the order they alternate.
WITH_BYTECODE, WITHOUT_BYTECODE = "bytecode", "none"
# This CPU's manylinux wheels, up to the glibc Lambda's python3.13 has (2.34): the Makefile's PLATFORMS, for here.
HOST_PLATFORMS = " ".join(f"manylinux_2_{minor}_{platform.machine()}" for minor in (17, 28, 34))
CACHES = shutil.ignore_patterns("__pycache__", "*.pyc")


def _install(target: Path, pip_arguments: list[str], stamp_text: str, what: str) -> None:
    """pip-install into `target`, once per change of `stamp_text` (what is asked for)."""
    stamp = target / ".requirements"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return
    print(f"==> installing {what} into {target.relative_to(ROOT)}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"]
    subprocess.run([*pip, "--target", str(target), *pip_arguments], check=True)
    stamp.write_text(stamp_text)


def install_runtime_packages() -> None:
    """boto3 as the Lambda runtime ships it (the dev venv's version)."""
    boto3 = f"boto3=={metadata.version('boto3')}"
    _install(RUNTIME_PACKAGES, [boto3], boto3, "boto3, as the Lambda runtime ships it")


def build_layer_twin(logical_id: str, source_dir: Path) -> dict[str, Path]:
    """The layer built by its own Makefile for this CPU, with its bytecode and without: variant -> its python/ folder.

    Built again when anything in its source folder (the Makefile, the requirements, the package) or this interpreter
    changes.
    """
    twin = LAYER_TWINS / logical_id
    digest = hashlib.sha256(f"{sys.version}\n{HOST_PLATFORMS}\n".encode())
    for path in sorted(source_dir.rglob("*")):
        if path.is_file() and not {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"} & set(path.parts):
            digest.update(f"{path.relative_to(source_dir)}\n".encode() + path.read_bytes())
    stamp_text = digest.hexdigest()
    stamp = twin / ".built-from"
    folders = {WITH_BYTECODE: twin / "python", WITHOUT_BYTECODE: twin / "without-bytecode" / "python"}
    if stamp.exists() and stamp.read_text() == stamp_text:
        return folders
    print(f"==> building {logical_id} for this CPU with {source_dir.relative_to(ROOT)}/Makefile", flush=True)
    shutil.rmtree(twin, ignore_errors=True)
    twin.mkdir(parents=True)
    make = ["make", "--no-print-directory", "-f", str(source_dir / "Makefile"), f"build-{logical_id}"]
    variables = [f"ARTIFACTS_DIR={twin}", f"LAYER_PYTHON={sys.executable}", f"PLATFORMS={HOST_PLATFORMS}"]
    result = subprocess.run([*make, *variables], cwd=source_dir, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"building {logical_id}'s twin failed:\n{result.stdout}{result.stderr}")
    shutil.copytree(folders[WITH_BYTECODE], folders[WITHOUT_BYTECODE], ignore=CACHES)
    stamp.write_text(stamp_text)
    return folders


def compare_bytecode(logical_id: str, twin: Path) -> tuple[int, int]:
    """How many of the twin's .pyc files there are, and how many are byte for byte the built layer's (-1: no build)."""
    built = SAM_BUILD / logical_id / "python"
    pycs = [path.relative_to(twin) for path in twin.rglob("*.pyc")]
    if not built.is_dir():
        return len(pycs), -1
    same = sum(1 for pyc in pycs if (built / pyc).is_file() and filecmp.cmp(twin / pyc, built / pyc, shallow=False))
    return len(pycs), same


def _fresh_python(paths: list[str], code: str) -> str:
    """What `code` prints, run by a fresh interpreter without site-packages whose sys.path starts with `paths`."""
    # No .pyc is written, as on Lambda, where the code and the layers are read-only: whatever has no bytecode in the
    # artifact (the functions' own modules; every module of the layer without bytecode) is compiled at every start.
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    probe = f"import sys\nsys.path[:0] = {paths!r}\n{code}"
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, env=environment
    )
    return result.stdout.strip()


def import_ms(paths: list[str], module: str) -> float:
    """Milliseconds to import `module` in a fresh interpreter without site-packages."""
    code = f"import time\nstarted = time.perf_counter()\nimport {module}\nprint((time.perf_counter() - started) * 1000)"
    return float(_fresh_python(paths, code))


def loads_boto3(paths: list[str], module: str) -> bool:
    """Whether importing `module` imports boto3 (then its cold start pays boto3's import too)."""
    return _fresh_python(paths, f"import {module}\nprint('boto3' in sys.modules)") == "True"


def median_import_ms(paths: list[str], module: str) -> float:
    import_ms(paths, module)  # warm the file system cache
    return statistics.median(import_ms(paths, module) for _ in range(RUNS))


def median_import_ms_alternating(variants: dict[str, list[str]], module: str) -> dict[str, float]:
    """Median import time of `module` with each variant's path, the variants taking turns run by run."""
    for paths in variants.values():
        import_ms(paths, module)  # warm the file system cache
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(RUNS):
        for variant, paths in variants.items():
            times[variant].append(import_ms(paths, module))
    return {variant: statistics.median(values) for variant, values in times.items()}


def run() -> dict[str, float]:
    """Median cold import time per function with the layer's bytecode (and whether it imports boto3) and without;
    the twin's bytecode checked against the built layer's; boto3's own import for scale."""
    install_runtime_packages()
    template = Template(ROOT / "template.yaml")
    # Only code paths matter here: resources that exist only in a running stack get placeholder identities.
    placeholders = {logical_id: ResourceIdentity(logical_id, {"Arn": logical_id}) for logical_id in template.resources}
    identities = placeholders | template.default_identities()
    results: dict[str, float] = {}
    twins: dict[Path, dict[str, Path]] = {}
    for logical_id, layer in template.resources_of_type("AWS::Serverless::LayerVersion").items():
        if (layer.get("Metadata") or {}).get("BuildMethod") != "makefile":
            raise SystemExit(f"{logical_id}: only layers built by their Makefile can be built again for this CPU")
        source_dir = (ROOT / layer["Properties"]["ContentUri"]).resolve()
        twins[source_dir] = build_layer_twin(logical_id, source_dir)
        pycs, same = compare_bytecode(logical_id, twins[source_dir][WITH_BYTECODE])
        results[f"cold_import_layer_pyc_files_{logical_id}"] = pycs
        results[f"cold_import_layer_pyc_same_as_built_{logical_id}"] = same
        built = f".aws-sam/build/{logical_id}"
        verdict = f"no {built} to compare with (make template)" if same < 0 else f"{same} byte for byte {built}'s"
        print(f"  {logical_id} for this CPU: {pycs} .pyc files, {verdict}", flush=True)
    print(f"  {'function':<24} {'bytecode':>9} {'none':>9}  (ms; the layer with its bytecode, without)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        code_copies: dict[Path, Path] = {}
        for function_id in template.function_ids():
            spec = template.function(function_id, identities)
            if spec.code_dir not in code_copies:
                code_copies[spec.code_dir] = Path(scratch) / str(len(code_copies))
                shutil.copytree(spec.code_dir, code_copies[spec.code_dir], ignore=CACHES)
            code = str(code_copies[spec.code_dir])
            variants = {
                variant: [code, *(str(twins[layer][variant]) for layer in spec.layer_dirs), str(RUNTIME_PACKAGES)]
                for variant in (WITH_BYTECODE, WITHOUT_BYTECODE)
            }
            module = spec.handler.rsplit(".", 1)[0]
            medians = median_import_ms_alternating(variants, module)
            results[f"cold_import_ms_{function_id}"] = round(medians[WITH_BYTECODE], 1)
            results[f"cold_import_no_bytecode_ms_{function_id}"] = round(medians[WITHOUT_BYTECODE], 1)
            results[f"cold_import_loads_boto3_{function_id}"] = int(loads_boto3(variants[WITH_BYTECODE], module))
            boto3_note = " (imports boto3)" if results[f"cold_import_loads_boto3_{function_id}"] else ""
            print(
                f"  {function_id:<24} {medians[WITH_BYTECODE]:>9.1f} {medians[WITHOUT_BYTECODE]:>9.1f}{boto3_note}",
                flush=True,
            )
    boto3_paths = [path for path in sys.path if path.endswith("site-packages")]
    results["cold_import_ms_boto3_reference"] = round(median_import_ms(boto3_paths, "boto3"), 1)
    print(f"  {'boto3 (reference)':<24} {results['cold_import_ms_boto3_reference']:>9.1f}", flush=True)
    return results
