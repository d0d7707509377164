"""`sam build`'s output (.aws-sam/build) is what Lambda gets: the right files, built for the right CPU, small enough.

Run by `make template` after `sam build`; without a build every test fails (it does not skip) and says so.
"""

import ast
import importlib.util
import re
import sys
from collections.abc import Iterable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from tests.build.conftest import (
    EXTERNAL_LAYER_ALLOWANCE_MB,
    MB,
    ROOT,
    UNZIPPED_LIMIT_MB,
    Build,
    BuiltLayer,
    files_under,
)
from tests.lock_files import locked, normal

# What sam build's python builder leaves out of a function's CodeUri copy (aws_lambda_builders'
# PythonPipWorkflow.EXCLUDED_FILES, the part a source folder here can hold). It reads no ignore file (there is no
# .samignore): everything else in the folder is shipped.
SAM_LEAVES_OUT: tuple[str, ...] = ("__pycache__", "*.pyc", "*.so", ".pytest_cache", ".mypy_cache", ".venv", "venv")
SAM_LEAVES_OUT += (".env", ".git", ".gitignore", ".aws-sam", ".cache", ".coverage", "htmlcov", ".tox", ".nox")
SAM_LEAVES_OUT += (".python-version", ".idea", ".vscode", "*.egg-info", "*.egg")
# Development files that must never reach Lambda from our own code (the functions' folders, the layer's package).
DEV_DIRS = {"tests", "test", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "venv", ".git"}
DEV_DIRS |= {".idea", ".vscode", ".aws-sam", "events", "bench", "local", "node_modules", "htmlcov", "build"}
DEV_FILES: tuple[str, ...] = ("conftest.py", "test_*.py", "*_test.py", "*.pyc", "requirements-dev*", "Makefile")
DEV_FILES += ("requirements-tools*", "pyproject.toml", "setup.cfg", "tox.ini", "samconfig.toml", "template.yaml")
DEV_FILES += ("*.md", ".env", ".env.*", ".gitignore", ".DS_Store", "*.log", ".coverage", ".python-version")
DEV_FILES += ("*.orig", "*.rej", "*.swp", "*~")
# The layer is built by its Makefile (BuildMethod makefile): the pinned requirements, installed from this manifest,
# then each package folder of ContentUri less these (the Makefile's LEAVE_OUT), then bytecode for every module. The
# manifest and the Makefile stay behind.
LAYER_REQUIREMENTS = "requirements.txt"
LAYER_LEAVES_OUT: tuple[str, ...] = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests")
LAYER_LEAVES_OUT += ("conftest.py", "test_*.py")
# Bytecode, PEP 552's header: the magic number of the runtime's CPython (importlib's MAGIC_NUMBER, fixed within a
# release series), the flags (bit 0: hash-based; bit 1: check_source) and the source's SipHash, 16 bytes in all.
# Unchecked hash (0b01): CPython uses the .pyc without looking at the source's mtime (sam's zip records none: every
# entry says 1980-01-01, so a timestamp .pyc would never match) and without hashing the source.
PYC_MAGIC = {"python3.13": 3571}
PYC_UNCHECKED_HASH = 0b01
PYC_HEADER_BYTES = 16
# The AWS SDK comes with the Lambda runtime: a layer's copy would only add megabytes and shadow the runtime's.
AWS_SDK = ("boto3", "botocore", "s3transfer", "boto3_stubs", "mypy_boto3*", "types_boto*")
# What our code may import from the runtime rather than the layer: boto3, and what botocore ships with (urllib3).
RUNTIME_MODULES = {"boto3", "botocore", "urllib3"}
ELF_MAGIC = b"\x7fELF"
ELF_MACHINES = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64 (e_machine, offset 18)
# How an extension module's file name and a wheel's platform tag spell each architecture.
MULTIARCH = {"arm64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
WHEEL_PLATFORM = {"arm64": "aarch64", "x86_64": "x86_64"}
EXTENSION_NAME = re.compile(r"\.cpython-(?P<version>\d+)-(?P<multiarch>[\w-]+)\.so$")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(name, pattern) for pattern in patterns)


def _shipped_from_source(source_dir: Path) -> dict[Path, Path]:
    """The files sam build copies from a source folder: relative path -> the source file."""
    return {
        path.relative_to(source_dir): path
        for path in files_under(source_dir)
        if not any(_matches(part, SAM_LEAVES_OUT) for part in path.relative_to(source_dir).parts)
    }


STALE = "a stale build (run `make template`) or a file that does not come from the source folder"


def _differences(expected: dict[Path, Path], shipped: dict[Path, Path]) -> list[str]:
    """How a built folder differs from the files its source folder should have given it."""
    missing = [f"missing: {path}" for path in sorted(expected.keys() - shipped.keys())]
    extra = [f"not from the source: {path}" for path in sorted(shipped.keys() - expected.keys())]
    changed = [
        f"differs from the source: {path}"
        for path in sorted(expected.keys() & shipped.keys())
        if expected[path].read_bytes() != shipped[path].read_bytes()
    ]
    return missing + extra + changed


def _dev_files(folder: Path, files: Iterable[Path]) -> list[str]:
    """The development files among `files` (under `folder`), by name or by a folder they sit in."""
    return [
        str(path.relative_to(folder))
        for path in files
        if _matches(path.name, DEV_FILES) or DEV_DIRS & set(path.relative_to(folder).parts[:-1])
    ]


def _third_party_files(layer: BuiltLayer) -> set[Path]:
    """Every file the layer's installed distributions list in their RECORDs (the rest of the layer is ours)."""
    recorded: set[Path] = set()
    for record in layer.python_dir.glob("*.dist-info/RECORD"):
        for line in record.read_text().splitlines():
            if line.strip():
                recorded.add((layer.python_dir / line.rsplit(",", 2)[0]).resolve())
    return recorded


def _is_bytecode(path: Path) -> bool:
    return path.suffix == ".pyc"


def _our_layer_files(layer: BuiltLayer) -> dict[Path, Path]:
    """The layer's files that no distribution installed, bytecode aside: what the build copied from ContentUri
    (relative to python/)."""
    third_party = _third_party_files(layer)
    return {
        path.relative_to(layer.python_dir): path
        for path in files_under(layer.python_dir)
        if path.resolve() not in third_party and not _is_bytecode(path)
    }


def _copied_from_source(source_dir: Path) -> dict[Path, Path]:
    """What the layer's Makefile should copy from ContentUri: each package folder, less LAYER_LEAVES_OUT (it copies
    leaderboard: a package added beside it is reported missing until the Makefile copies it too)."""
    return {
        path.relative_to(source_dir): path
        for package in sorted(source_dir.iterdir())
        if (package / "__init__.py").is_file()
        for path in files_under(package)
        if not any(_matches(part, LAYER_LEAVES_OUT) for part in path.relative_to(source_dir).parts)
    }


def _pyc_header(path: Path) -> tuple[int, int, bytes]:
    """A .pyc's magic number, flags and source hash (PEP 552)."""
    with path.open("rb") as file:
        header = file.read(PYC_HEADER_BYTES)
    assert len(header) == PYC_HEADER_BYTES, f"{path}: truncated"
    return int.from_bytes(header[:2], "little"), int.from_bytes(header[4:8], "little"), header[8:16]


def _elf_machine(path: Path) -> int | None:
    """e_machine from an ELF header (None if the file is not ELF)."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    # EI_DATA (byte 5): 1 little-endian, 2 big-endian.
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _runtime_version(runtime: str) -> str:
    """The runtime's Python version as extension modules and wheel tags spell it: python3.13 -> 313."""
    return runtime.removeprefix("python").replace(".", "")


def _defines(module: ast.Module, name: str) -> bool:
    """Whether a module defines `name` at its top level (a def, or an assignment such as a decorated callable)."""
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def _runtime_imports(statements: list[ast.stmt]) -> Iterator[str]:
    """Top-level names of the absolute imports that run (those under `if TYPE_CHECKING:` do not)."""
    for node in statements:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _runtime_imports(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0]
        for field in ("body", "orelse", "finalbody"):  # functions' lazy imports run too, at their first call
            yield from _runtime_imports([child for child in getattr(node, field, []) if isinstance(child, ast.stmt)])
        for handler in getattr(node, "handlers", []):
            yield from _runtime_imports(handler.body)


def _only_layer(build: Build) -> BuiltLayer:
    assert len(build.layers) == 1, f"these checks expect one layer built from the template, found {list(build.layers)}"
    return next(iter(build.layers.values()))


# (d) every function is built, with its handler ---------------------------------------------------------------------


def test_every_function_of_the_template_has_an_artifact_with_its_handler(build: Build) -> None:
    assert build.functions, "template.yaml has no AWS::Serverless::Function"
    problems = []
    for function in build.functions.values():
        module, _, name = function.handler.rpartition(".")
        if not function.handler_file.is_file():
            problems.append(f"{function.logical_id}: no {function.handler_file.relative_to(ROOT)} for {module}")
        elif not _defines(ast.parse(function.handler_file.read_text()), name):
            problems.append(f"{function.logical_id}: {module} defines no {name}")
    assert not problems, "\n".join(problems)


def test_each_function_artifact_holds_its_source_folder_and_nothing_else(build: Build) -> None:
    problems = [
        f"{function.logical_id}: {difference}"
        for function in build.functions.values()
        for difference in _differences(
            _shipped_from_source(function.source_dir),
            {path.relative_to(function.artifact_dir): path for path in files_under(function.artifact_dir)},
        )
    ]
    assert not problems, f"{STALE}:\n" + "\n".join(problems)


# (a) the layer: its package where Lambda looks, its dependencies for the functions' CPU ----------------------------


def test_the_layer_package_sits_at_python_leaderboard(build: Build) -> None:
    # The layer trap: sam build copies ContentUri into python/, so layers/common/leaderboard lands at python/leaderboard
    # (/opt/python/leaderboard on Lambda); a layers/common/python/ folder would land one level deeper.
    layer = _only_layer(build)
    assert (layer.python_dir / "leaderboard" / "__init__.py").is_file()
    assert not (layer.python_dir / "python").exists()
    assert [path.name for path in layer.artifact_dir.iterdir()] == ["python"]


def test_the_layer_holds_its_source_package_besides_its_dependencies(build: Build) -> None:
    # Only the package: the Makefile and requirements.txt beside it are the build's, not Lambda's.
    layer = _only_layer(build)
    problems = _differences(_copied_from_source(layer.source_dir), _our_layer_files(layer))
    assert not problems, f"{STALE}:\n" + "\n".join(problems)


def test_the_layer_has_each_pinned_requirement_installed(build: Build) -> None:
    layer = _only_layer(build)
    installed: dict[str, str] = {}
    for dist_info in layer.python_dir.glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").rpartition("-")
        installed[normal(name)] = version
    pinned = locked(layer.source_dir / LAYER_REQUIREMENTS)
    assert pinned, f"no pins in {LAYER_REQUIREMENTS}"
    missing = [
        f"{name}=={package.version}: installed {installed.get(name)}"
        for name, package in pinned.items()
        if installed.get(name) != package.version
    ]
    assert not missing, "\n".join(missing)


def test_what_our_code_imports_is_in_the_layer_or_the_runtime(build: Build) -> None:
    # A module the dev venv has but the layer does not (a missing line in requirements.txt) fails only on Lambda.
    layer = _only_layer(build)
    sources = [
        *files_under(layer.source_dir),
        *(f for fn in build.functions.values() for f in files_under(fn.source_dir)),
    ]
    imported = {
        name
        for path in sources
        if path.suffix == ".py" and "__pycache__" not in path.parts
        for name in _runtime_imports(ast.parse(path.read_text()).body)
    }
    # A handler may import a module of its own code folder, which sits beside it on Lambda.
    beside_handlers = {path.stem for fn in build.functions.values() for path in fn.source_dir.glob("*.py")}
    third_party = imported - set(sys.stdlib_module_names) - RUNTIME_MODULES - beside_handlers
    absent = [
        name
        for name in sorted(third_party)
        if not (layer.python_dir / name / "__init__.py").is_file()
        and not (layer.python_dir / f"{name}.py").is_file()
        and not list(layer.python_dir.glob(f"{name}.*.so"))
    ]
    assert not absent, f"imported by our code, not in the layer: {absent}"


def test_the_layer_compiled_code_is_built_for_the_functions_cpu(build: Build) -> None:
    layer = _only_layer(build)
    architectures = {arch for function in build.functions.values() for arch in function.architectures}
    assert architectures == {layer.architecture}, "functions and their layer are built for different CPUs"
    expected = ELF_MACHINES[layer.architecture]
    machines = {path: _elf_machine(path) for path in files_under(layer.artifact_dir)}
    elf = {path: machine for path, machine in machines.items() if machine is not None}
    assert elf, "no compiled code in the layer: pydantic_core, argon2 and icu ship some"
    wrong = [
        f"{path.relative_to(layer.artifact_dir)}: e_machine {machine}"
        for path, machine in elf.items()
        if machine != expected
    ]
    assert not wrong, f"not built for {layer.architecture} (e_machine {expected}):\n" + "\n".join(wrong)
    version = _runtime_version(layer.runtime)
    misnamed = [
        path.name
        for path in elf
        if (match := EXTENSION_NAME.search(path.name))
        and (match["version"] != version or match["multiarch"] != MULTIARCH[layer.architecture])
    ]
    assert not misnamed, f"extension modules not for {layer.runtime} on {layer.architecture}: {misnamed}"


def test_the_layer_wheels_were_made_for_its_cpu_and_python(build: Build) -> None:
    # A wheel pip built here from an sdist says linux_x86_64: the ELF check catches its code, this names the wheel.
    layer = _only_layer(build)
    version = _runtime_version(layer.runtime)
    wrong = []
    for wheel in layer.python_dir.glob("*.dist-info/WHEEL"):
        for line in wheel.read_text().splitlines():
            if not line.startswith("Tag:"):
                continue
            python, abi, platform = line.removeprefix("Tag:").strip().split("-")
            platform_ok = platform == "any" or platform.endswith(f"_{WHEEL_PLATFORM[layer.architecture]}")
            python_ok = abi in ("none", "abi3") or python == f"cp{version}"
            if not (platform_ok and python_ok):
                wrong.append(f"{wheel.parent.name}: {python}-{abi}-{platform}")
    assert not wrong, "\n".join(wrong)


# (b) nothing that is not for Lambda --------------------------------------------------------------------------------


def test_no_function_artifact_ships_tests_or_development_files(build: Build) -> None:
    shipped = [
        f"{function.logical_id}: {path}"
        for function in build.functions.values()
        for path in _dev_files(function.artifact_dir, files_under(function.artifact_dir))
    ]
    assert not shipped, "\n".join(shipped)


def test_the_layer_ships_no_tests_or_development_files_of_ours(build: Build) -> None:
    # Third-party packages' own test folders are left as their wheels have them: artifact-sizes.json reports them.
    layer = _only_layer(build)
    shipped = _dev_files(layer.python_dir, _our_layer_files(layer).values())
    assert not shipped, "\n".join(shipped)


def test_the_layer_ships_no_aws_sdk(build: Build) -> None:
    layer = _only_layer(build)
    sdk = [
        path.name
        for path in layer.python_dir.iterdir()
        if _matches(path.name.partition("-")[0].removesuffix(".py"), AWS_SDK)
    ]
    assert not sdk, f"the Lambda runtime provides the AWS SDK; the layer ships {sdk}"


# (e) bytecode: Lambda's /opt is read-only, so what is not compiled at build time is compiled at every cold start ---


def test_every_module_of_the_layer_has_unchecked_hash_bytecode_for_the_runtime(build: Build) -> None:
    # Ours and third-party alike: __pycache__/<module>.cpython-313.pyc beside each .py, the runtime's magic number,
    # unchecked hash. Unchecked means CPython never compares it with the source again: it must be the source's own,
    # which the hash says when this interpreter is the runtime's (its SipHash key is the magic number).
    layer = _only_layer(build)
    tag = f"cpython-{_runtime_version(layer.runtime)}"
    magic = PYC_MAGIC[layer.runtime]
    same_python = f"python{sys.version_info.major}.{sys.version_info.minor}" == layer.runtime
    modules = [path for path in files_under(layer.python_dir) if path.suffix == ".py"]
    assert len(modules) > 100, "the layer's packages are missing"
    problems = []
    for module in modules:
        relative = module.relative_to(layer.python_dir)
        pyc = module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc"
        if not pyc.is_file():
            problems.append(f"{relative}: no {pyc.relative_to(module.parent)}")
            continue
        pyc_magic, flags, source_hash = _pyc_header(pyc)
        if pyc_magic != magic:
            problems.append(f"{relative}: magic number {pyc_magic}, not {layer.runtime}'s {magic}")
        elif flags != PYC_UNCHECKED_HASH:
            problems.append(f"{relative}: flags {flags:#04b}, not unchecked hash ({PYC_UNCHECKED_HASH:#04b})")
        elif same_python and source_hash != importlib.util.source_hash(module.read_bytes()):
            problems.append(f"{relative}: the bytecode is not this source's (a stale .pyc)")
    assert not problems, f"{len(problems)} of {len(modules)} modules:\n" + "\n".join(problems[:20])


def test_the_layer_holds_no_bytecode_without_its_module(build: Build) -> None:
    # A .pyc for another Python or optimization level is dead weight; one outside __pycache__ would be imported even
    # without its source.
    layer = _only_layer(build)
    tag = f"cpython-{_runtime_version(layer.runtime)}"
    orphans = [
        str(pyc.relative_to(layer.python_dir))
        for pyc in files_under(layer.python_dir)
        if _is_bytecode(pyc)
        and not (
            pyc.parent.name == "__pycache__"
            and pyc.name.endswith(f".{tag}.pyc")
            and (pyc.parent.parent / f"{pyc.name.removesuffix(f'.{tag}.pyc')}.py").is_file()
        )
    ]
    assert not orphans, "\n".join(orphans)


# (c) sizes ---------------------------------------------------------------------------------------------------------


def test_each_function_with_its_layers_fits_lambdas_unzipped_limit(artifact_sizes: dict[str, Any]) -> None:
    # Lambda counts the function's code and every layer it has, unzipped: 250 MB.
    too_big = {
        name: function["with_layers_and_allowance_mb"]
        for name, function in artifact_sizes["functions"].items()
        if function["with_layers_and_allowance_mb"] >= UNZIPPED_LIMIT_MB
    }
    allowance = f"{EXTERNAL_LAYER_ALLOWANCE_MB} MB for each layer given by ARN"
    assert not too_big, f"over {UNZIPPED_LIMIT_MB} MB unzipped (with {allowance}): {too_big}"
    assert all(function["bytes"] > 0 for function in artifact_sizes["functions"].values())
    assert all(layer["bytes"] > 10 * MB for layer in artifact_sizes["layers"].values()), "a layer without its packages"
