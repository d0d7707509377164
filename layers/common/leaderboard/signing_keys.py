"""The JWT signing keys, read from Secrets Manager through the AWS Parameters and Secrets Lambda Extension.

The extension is a local HTTP endpoint, so no AWS SDK is imported: the authorizer's cold start stays small.
Each secret version is a key and its VersionId is the `kid`: tokens are signed with AWSCURRENT and verified
with AWSCURRENT or AWSPREVIOUS, so rotating the secret never logs anybody out. A kid not seen yet is looked up
by its VersionId, which the extension has never cached: a token signed with a just-rotated key verifies at once.
"""

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from leaderboard.config import settings

# Re-read the secret this often, so a rotation reaches warm containers within minutes.
REFRESH_SECONDS = 300
# An unknown kid is looked up at most this often, so forged kids cannot flood Secrets Manager.
UNKNOWN_KID_RETRY_SECONDS = 30
_VERIFYING_STAGES = {"AWSCURRENT", "AWSPREVIOUS"}


class KeyUnavailable(RuntimeError):
    """The signing key could not be read (the extension or Secrets Manager failed)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes


type SecretFetcher = Callable[[dict[str, str]], dict[str, Any] | None]
"""Fetches one version of the secret, selected by {"versionStage": ...} or {"versionId": ...}: GetSecretValue's
answer, or None when there is no such version."""


def fetch_from_extension(version: dict[str, str]) -> dict[str, Any] | None:
    """GetSecretValue through the Parameters and Secrets extension on localhost."""
    query = urlencode({"secretId": settings.signing_key_secret_id, **version})
    connection = http.client.HTTPConnection("localhost", settings.secrets_extension_port, timeout=5)
    try:
        connection.request(
            "GET",
            f"/secretsmanager/get?{query}",
            headers={"X-Aws-Parameters-Secrets-Token": settings.secrets_extension_token},
        )
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise KeyUnavailable("the Parameters and Secrets extension did not answer") from exc
    finally:
        connection.close()
    if response.status == 200:
        return dict(json.loads(body))
    if response.status in (400, 404):
        return None  # no such version (no previous version yet, or a kid that never existed)
    raise KeyUnavailable(f"the Parameters and Secrets extension answered HTTP {response.status}")


class SigningKeys:
    """The current signing key and the keys that may still verify tokens, cached between invocations."""

    def __init__(self, fetch: SecretFetcher = fetch_from_extension, clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._current: SigningKey | None = None
        self._by_kid: dict[str, SigningKey] = {}
        self._loaded_at = float("-inf")
        self._looked_up_at = float("-inf")

    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        if self._current is None or self._age() > REFRESH_SECONDS:
            self._load()
        assert self._current is not None
        return self._current

    def find(self, kid: str) -> SigningKey | None:
        """The key with this kid, if it is the current or the previous version."""
        if self._age() > REFRESH_SECONDS:
            self._load()
        if kid not in self._by_kid and self._clock() - self._looked_up_at > UNKNOWN_KID_RETRY_SECONDS:
            self._looked_up_at = self._clock()
            version = self._fetch({"versionId": kid})
            if version is not None and _VERIFYING_STAGES & set(version.get("VersionStages", ())):
                self._by_kid[kid] = _signing_key(version)
        return self._by_kid.get(kid)

    def _age(self) -> float:
        return self._clock() - self._loaded_at

    def _load(self) -> None:
        current = self._fetch({"versionStage": "AWSCURRENT"})
        if current is None:
            raise KeyUnavailable("the signing key secret has no current version")
        keys = [_signing_key(current)]
        previous = self._fetch({"versionStage": "AWSPREVIOUS"})
        if previous is not None:
            keys.append(_signing_key(previous))
        self._current = keys[0]
        self._by_kid = {key.kid: key for key in keys}
        self._loaded_at = self._clock()


def _signing_key(secret_value: dict[str, Any]) -> SigningKey:
    key = json.loads(secret_value["SecretString"])["signing_key"]
    return SigningKey(kid=secret_value["VersionId"], secret=key.encode())


keys = SigningKeys()
"""The process-wide key cache: warm invocations reuse it."""
