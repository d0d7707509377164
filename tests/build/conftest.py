"""What `sam build` made (.aws-sam/build), read against template.yaml: each function's and layer's artifact.

The artifact sizes are written to build/artifact-sizes.json (the bench's `artifact_sizes` part reads them) and
printed as a table at the end of the run.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.template import Template, load_yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
SIZES_FILE = ROOT / "build" / "artifact-sizes.json"
# Lambda's limit on a function's code and all its layers, unzipped: "250 MB", 262,144,000 bytes (MiB, as AWS counts).
MB = 1024 * 1024
UNZIPPED_LIMIT_MB = 250
# Layers from outside this template (the Parameters and Secrets extension, by ARN) count towards the limit too, and
# their size is not known here: each is given this much room. A margin, not a measurement.
EXTERNAL_LAYER_ALLOWANCE_MB = 20
# Folders inside third-party packages that hold their own tests: shipped as the wheel has them, reported, not failed.
THIRD_PARTY_TEST_DIRS = {"tests", "test", "testing"}


@dataclass(frozen=True)
class BuiltLayer:
    logical_id: str
    source_dir: Path  # ContentUri
    artifact_dir: Path  # its folder in .aws-sam/build
    runtime: str  # CompatibleRuntimes' first: the runtime its packages and bytecode are built for (python3.13)
    architecture: str  # Metadata.BuildArchitecture

    @property
    def python_dir(self) -> Path:
        """What Lambda puts on sys.path from this layer (/opt/python)."""
        return self.artifact_dir / "python"


@dataclass(frozen=True)
class BuiltFunction:
    logical_id: str
    code_uri: str
    source_dir: Path  # CodeUri, in the project
    artifact_dir: Path  # its folder in .aws-sam/build
    handler: str
    architectures: tuple[str, ...]
    layers: tuple[str, ...]  # logical ids of the layers built from this template
    external_layers: int  # layers given by ARN: not part of this build

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.artifact_dir.joinpath(*module.split(".")).with_suffix(".py")


@dataclass(frozen=True)
class Build:
    functions: dict[str, BuiltFunction]
    layers: dict[str, BuiltLayer]


def read_build() -> Build:
    """template.yaml's functions and layers, each with the artifact folder the built template gives it."""
    template = Template(ROOT / "template.yaml")
    built_resources: dict[str, Any] = load_yaml((BUILD / "template.yaml").read_text())["Resources"]

    def artifact_dir(logical_id: str, uri_property: str) -> Path:
        built = built_resources.get(logical_id)
        assert built is not None, f"{logical_id} is in template.yaml but not in the built template: run `make template`"
        return BUILD / str(built["Properties"][uri_property])

    layers = {
        logical_id: BuiltLayer(
            logical_id=logical_id,
            source_dir=ROOT / resource["Properties"]["ContentUri"],
            artifact_dir=artifact_dir(logical_id, "ContentUri"),
            runtime=str((resource["Properties"].get("CompatibleRuntimes") or [""])[0]),
            architecture=str((resource.get("Metadata") or {}).get("BuildArchitecture", "x86_64")),
        )
        for logical_id, resource in template.resources_of_type("AWS::Serverless::LayerVersion").items()
    }
    functions = {}
    for logical_id in template.function_ids():
        props = template.function_properties(logical_id)
        refs = [layer.get("Ref") if isinstance(layer, dict) else None for layer in props.get("Layers") or []]
        own_layers = tuple(ref for ref in refs if ref in layers)
        functions[logical_id] = BuiltFunction(
            logical_id=logical_id,
            code_uri=str(props["CodeUri"]),
            source_dir=ROOT / props["CodeUri"],
            artifact_dir=artifact_dir(logical_id, "CodeUri"),
            handler=str(props["Handler"]),
            architectures=tuple(props.get("Architectures") or ["x86_64"]),
            layers=own_layers,
            external_layers=len(refs) - len(own_layers),
        )
    return Build(functions=functions, layers=layers)


@pytest.fixture(scope="session")
def build() -> Build:
    if not (BUILD / "template.yaml").is_file():
        pytest.fail(
            f"no build at {BUILD.relative_to(ROOT)}: these tests check `sam build`'s output; run `make template`",
            pytrace=False,
        )
    return read_build()


def files_under(folder: Path) -> Iterator[Path]:
    """Every file under `folder`, recursively, in a stable order."""
    return (path for path in sorted(folder.rglob("*")) if path.is_file())


def size_of(folder: Path) -> int:
    """Unzipped bytes: what Lambda counts against its limit."""
    return sum(path.stat().st_size for path in files_under(folder))


def third_party_test_files(python_dir: Path) -> list[Path]:
    """Files inside third-party packages' own test folders (a layer's python/<package>/.../tests/...)."""
    return [
        path
        for path in files_under(python_dir)
        if THIRD_PARTY_TEST_DIRS & set(path.relative_to(python_dir).parts[1:-1])
    ]


def _mb(size: int) -> float:
    return round(size / MB, 3)


_SIZES = pytest.StashKey[dict[str, Any]]()


@pytest.fixture(scope="session")
def artifact_sizes(build: Build, pytestconfig: pytest.Config) -> dict[str, Any]:
    """Each artifact's unzipped size, and each function's with its layers; written to build/artifact-sizes.json."""
    layer_bytes = {layer.logical_id: size_of(layer.artifact_dir) for layer in build.layers.values()}
    layers: dict[str, Any] = {}
    for layer in build.layers.values():
        tests = third_party_test_files(layer.python_dir)
        layers[layer.logical_id] = {
            "bytes": layer_bytes[layer.logical_id],
            "mb": _mb(layer_bytes[layer.logical_id]),
            "third_party_test_files": len(tests),
            "third_party_test_bytes": sum(path.stat().st_size for path in tests),
        }
    functions: dict[str, Any] = {}
    for function in build.functions.values():
        own = size_of(function.artifact_dir)
        with_layers = own + sum(layer_bytes[layer] for layer in function.layers)
        functions[function.logical_id] = {
            "code_uri": function.code_uri,
            "bytes": own,
            "mb": _mb(own),
            "layers": list(function.layers),
            "external_layers": function.external_layers,
            "with_layers_mb": _mb(with_layers),
            "with_layers_and_allowance_mb": _mb(
                with_layers + function.external_layers * EXTERNAL_LAYER_ALLOWANCE_MB * MB
            ),
        }
    sizes = {
        "limit_mb": UNZIPPED_LIMIT_MB,
        "external_layer_allowance_mb": EXTERNAL_LAYER_ALLOWANCE_MB,
        "layers": layers,
        "functions": functions,
    }
    SIZES_FILE.parent.mkdir(exist_ok=True)
    SIZES_FILE.write_text(json.dumps(sizes, indent=2) + "\n")
    pytestconfig.stash[_SIZES] = sizes
    return sizes


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The sizes as a short table (shown even with -q), when this run measured them."""
    sizes = config.stash.get(_SIZES, None)
    if sizes is None:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", f"unzipped artifact sizes (MB; Lambda's limit {sizes['limit_mb']} MB)")
    # Functions built from one code folder weigh the same: one row per folder.
    folders: dict[str, list[str]] = {}
    for name, function in sizes["functions"].items():
        folders.setdefault(function["code_uri"], []).append(name)
    write(f"{'artifact':<26} {'own':>8} {'+ layers':>9}")
    for name, layer in sizes["layers"].items():
        write(f"{name + ' (layer)':<26} {layer['mb']:>8.3f}")
    for folder, names in sorted(folders.items()):
        largest = max((sizes["functions"][name] for name in names), key=lambda function: function["bytes"])
        label = f"{folder} x{len(names)}"
        write(f"{label:<26} {largest['mb']:>8.3f} {largest['with_layers_mb']:>9.3f}")
    write(
        f"(+ {sizes['external_layer_allowance_mb']} MB allowed per layer given by ARN; "
        f"written to {SIZES_FILE.relative_to(ROOT)})"
    )
