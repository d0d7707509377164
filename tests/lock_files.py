"""Reading the hashed lock files `make lock` writes (requirements*.txt): one `name[extras]==version [; marker] \\`
line per package, then a `--hash=sha256:...` line per file of it, with `# via` comments between."""

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?"
)


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, Locked]:
    """The lock file's packages by normalized name; fails on any line that is not a pin, a hash or a comment."""
    packages: dict[str, Locked] = {}
    current: Locked | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip().removesuffix("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash=sha256:"):
            assert current is not None, f"{path}: a hash before any pin"
            current = packages[normal(current.name)] = Locked(
                current.name, current.version, current.marker, (*current.hashes, stripped.removeprefix("--hash="))
            )
            continue
        match = REQUIREMENT.match(stripped)
        assert match, f"{path}: not a pinned requirement: {line!r}"
        current = Locked(match["name"], match["version"], (match["marker"] or "").strip() or None, ())
        packages[normal(current.name)] = current
    return packages
