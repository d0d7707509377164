"""No log line of the whole e2e run holds a token, a password or a secret (DESIGN.md §5; issue 12, point 5).

This module runs last (conftest.py orders it so). By then every other e2e test has registered, logged in, refreshed,
scored, subscribed and been refused, on the session's local runtimes started with ``LogLevel=DEBUG``: every line
the functions, the gateway, the live feed, moto and Redis wrote is in the runtimes' state folders. The secrets are
what the session sent or was answered (``secrets_seen.py``) and every version of the stack's signing key.
Against a deployed stack the logs are CloudWatch's: the check is the local runtime's only.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.services import Endpoints, aws_session
from tests.e2e.conftest import RUNTIME_STATE_DIRS
from tests.e2e.secrets_seen import SecretsSeen, improbable

pytestmark = pytest.mark.e2e

# Any JWS, ours or forged: two base64url JSON parts starting '{"' and a signature part (possibly empty).
JWS = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*")
# A run that handled fewer than this (one file of the suite runs with it) would prove nothing.
FEWEST_SECRETS = 10


def string_values(document: object) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for value in document.values():
            yield from string_values(value)
    elif isinstance(document, list):
        for value in document:
            yield from string_values(value)


def signing_keys(local_stack: Endpoints) -> set[str]:
    """Every value in every version of the signing-key secret (rotations in the run add versions)."""
    secrets = aws_session(local_stack.session_token).client("secretsmanager", endpoint_url=local_stack.aws_endpoint_url)
    secret_id = local_stack.identities["SigningKeySecret"].ref
    versions = secrets.list_secret_version_ids(SecretId=secret_id)["Versions"]
    values: set[str] = set()
    for version in versions:
        secret = secrets.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"])
        values |= {value for value in string_values(json.loads(secret["SecretString"])) if improbable(value)}
    return values


def logs() -> Iterator[tuple[Path, str]]:
    for state_dir in RUNTIME_STATE_DIRS:
        for path in sorted(state_dir.glob("*.log")):
            yield path, path.read_text(errors="replace")


def where(text: str, found: re.Match[str] | int) -> int:
    """The line number of a match or an offset."""
    offset = found if isinstance(found, int) else found.start()
    return text.count("\n", 0, offset) + 1


def test_no_log_line_holds_a_token_a_password_or_a_secret(
    secrets_seen: SecretsSeen, local_stack: Endpoints | None
) -> None:
    if local_stack is None:
        pytest.skip("a deployed stack's logs are in CloudWatch: this check reads the local runtime's")
    assert len(secrets_seen.values) >= FEWEST_SECRETS, f"the run handled only {len(secrets_seen.values)} secrets"
    secrets = secrets_seen.values | signing_keys(local_stack)
    texts = list(logs())
    # The functions' own lines are there (DEBUG included), or the logs read are not the run's.
    assert any(re.search(r'"level":\s*"DEBUG"', text) for _, text in texts), "no DEBUG line in the logs read"
    leaks = [f"{path.name}:{where(text, found)}: a JWS" for path, text in texts for found in JWS.finditer(text)]
    leaks += [
        f"{path.name}:{where(text, offset)}: a secret the run used"
        for path, text in texts
        for secret in secrets
        if (offset := text.find(secret)) >= 0
    ]
    lines = sum(text.count("\n") for _, text in texts)
    secrets_seen.checked = (
        f"{len(secrets)} secrets ({len(secrets_seen.values)} from {secrets_seen.requests} requests, the rest the "
        f"signing key's versions) sought in {lines} lines of {len(texts)} logs: {len(leaks)} found"
    )
    # Each leak is named by file and line, never shown: the report must not spread what it found.
    assert not leaks, f"{len(leaks)} log lines hold a token, password or secret:\n" + "\n".join(leaks[:20])
