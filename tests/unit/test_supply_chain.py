"""Security-critical packages stay at or above the versions that fixed their last known advisories.

No advisory database is reachable from these machines, so the floors are written here, each with the advisory that
set it (as published up to 2026-11-30); raise a floor when a new advisory lands. The versions checked are those
installed from the pins (the layer's requirements.txt and requirements-dev.txt), transitive ones included.
"""

import importlib.metadata

import pytest
from packaging.markers import Marker
from packaging.version import Version

from tests.lock_files import PROJECT_ROOT, REQUIREMENT, locked, normal

# package: (the lowest acceptable version, why)
FLOORS = {
    "pyjwt": ("2.13", "the floor issue 12 sets for the token library (earlier: CVE-2024-53861, fixed in 2.10.1)"),
    "cryptography": ("44.0.1", "CVE-2024-12797: a vulnerable OpenSSL in its wheels"),
    "redis": ("4.5.4", "CVE-2023-28858 and CVE-2023-28859: replies sent to the wrong caller after a cancellation"),
    "pydantic": ("2.4.0", "CVE-2024-3772: regular expression denial of service in email validation"),
    "aiohttp": ("3.12.14", "CVE-2025-53643: request smuggling (the local runtime's gateway is aiohttp)"),
    "requests": ("2.32.4", "CVE-2024-47081: credentials leaked to a third party through .netrc"),
    "urllib3": ("2.5.0", "CVE-2025-50181 and CVE-2025-50182: redirects not disabled as asked"),
    "idna": ("3.7", "CVE-2024-3651: denial of service in idna.encode"),
    "certifi": ("2024.7.4", "CVE-2024-39689: GLOBALTRUST root certificates removed"),
}


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_a_security_critical_package_is_at_or_above_its_last_fix(package: str) -> None:
    floor, why = FLOORS[package]
    installed = Version(importlib.metadata.version(package))
    assert installed >= Version(floor), f"{package} {installed} is below {floor}: {why}"


# Every venv and the layer install from a lock file that `make lock` compiles from the .in beside it: every package,
# transitive ones included, pinned to one version with the sha256 of each of its files (pip --require-hashes).
LOCKS = {
    "layers/common/requirements.txt": "layers/common/requirements.in",
    "requirements-dev.txt": "requirements-dev.in",
    "requirements-tools.txt": "requirements-tools.in",
    "requirements-checkov.txt": "requirements-checkov.in",
    "requirements-pip.txt": "requirements-pip.in",
}


def pins(path: str) -> dict[str, str]:
    """The `name==version` pins written in a .in file (its `-r` includes followed)."""
    found: dict[str, str] = {}
    for line in (PROJECT_ROOT / path).read_text().splitlines():
        requirement = line.partition("#")[0].strip()
        if requirement.startswith("-r "):
            found |= pins(requirement.removeprefix("-r ").strip())
        elif match := REQUIREMENT.match(requirement):
            found[normal(match["name"])] = match["version"]
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_a_lock_pins_every_package_to_one_version_with_the_hashes_of_its_files(lock: str) -> None:
    packages = locked(PROJECT_ROOT / lock)
    assert packages, f"{lock} pins nothing"
    unhashed = [name for name, package in packages.items() if not package.hashes]
    assert not unhashed, f"{lock}: pinned without a hash: {unhashed}"
    assert all(len(digest) == len("sha256:") + 64 for package in packages.values() for digest in package.hashes)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_a_lock_holds_what_its_in_file_pins(lock: str) -> None:
    packages = locked(PROJECT_ROOT / lock)
    stale = {
        name: (version, packages[name].version if name in packages else None)
        for name, version in pins(LOCKS[lock]).items()
        if name not in packages or packages[name].version != version
    }
    assert not stale, f"{lock} is stale against {LOCKS[lock]} (pinned, locked): {stale}; run make lock"


def test_the_layer_and_the_dev_venv_lock_the_same_versions() -> None:
    layer, dev = locked(PROJECT_ROOT / "layers/common/requirements.txt"), locked(PROJECT_ROOT / "requirements-dev.txt")
    differ = {
        name: (package.version, dev[name].version)
        for name, package in layer.items()
        if dev[name].version != package.version
    }
    assert not differ, f"the tests would run other versions than Lambda's (layer, dev): {differ}"


def test_this_venv_runs_what_the_dev_lock_pins() -> None:
    applies = [
        package
        for package in locked(PROJECT_ROOT / "requirements-dev.txt").values()
        if package.marker is None or Marker(package.marker).evaluate()
    ]
    drifted = {
        package.name: (package.version, installed)
        for package in applies
        if (installed := importlib.metadata.version(package.name)) != package.version
    }
    assert not drifted, f"installed apart from the lock (locked, installed): {drifted}; make clean, then make test"
