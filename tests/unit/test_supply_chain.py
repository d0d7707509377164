"""Security-critical packages stay at or above the versions that fixed their last known advisories.

No advisory database is reachable from these machines, so the floors are written here, each with the advisory that
set it (as published up to 2026-11-30); raise a floor when a new advisory lands. The versions checked are those
installed from the pins (the layer's requirements.txt and requirements-dev.txt), transitive ones included.
"""

import importlib.metadata

import pytest
from packaging.version import Version

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
