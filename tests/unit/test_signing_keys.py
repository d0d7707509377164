"""The signing-key cache: few reads of the secret, rotation picked up, forged kids cannot flood it."""

import json
from typing import Any

import pytest

from leaderboard.signing_keys import REFRESH_SECONDS, UNKNOWN_KID_RETRY_SECONDS, KeyUnavailable, SigningKeys


class FakeSecret:
    """Secret versions by stage, counting reads like the extension would see them."""

    def __init__(self) -> None:
        self.stages: dict[str, tuple[str, str]] = {"AWSCURRENT": ("v1", "key-one")}
        self.reads = 0

    def rotate(self, version: str, key: str) -> None:
        self.stages = {"AWSCURRENT": (version, key), "AWSPREVIOUS": self.stages["AWSCURRENT"]}

    def fetch(self, selector: dict[str, str]) -> dict[str, Any] | None:
        self.reads += 1
        for stage, (version, key) in self.stages.items():
            if selector in ({"versionStage": stage}, {"versionId": version}):
                stages = [name for name, (other, _) in self.stages.items() if other == version]
                return {"VersionId": version, "SecretString": json.dumps({"signing_key": key}), "VersionStages": stages}
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secret() -> FakeSecret:
    return FakeSecret()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_current_key_is_read_once_and_cached(secret: FakeSecret, clock: Clock) -> None:
    keys = SigningKeys(fetch=secret.fetch, clock=clock)

    assert keys.current().kid == "v1"
    assert keys.current().secret == b"key-one"
    assert keys.find("v1") is not None
    assert secret.reads == 2  # AWSCURRENT and AWSPREVIOUS, once


def test_a_rotation_reaches_a_warm_container_after_the_refresh_period(secret: FakeSecret, clock: Clock) -> None:
    keys = SigningKeys(fetch=secret.fetch, clock=clock)
    keys.current()
    secret.rotate("v2", "key-two")

    assert keys.current().kid == "v1"
    clock.now += REFRESH_SECONDS + 1
    assert keys.current().kid == "v2"
    assert keys.find("v1") is not None, "tokens signed before the rotation still verify"


def test_a_new_kid_is_looked_up_by_version_id_at_once(secret: FakeSecret, clock: Clock) -> None:
    keys = SigningKeys(fetch=secret.fetch, clock=clock)
    keys.current()
    secret.rotate("v2", "key-two")

    found = keys.find("v2")

    assert found is not None
    assert found.secret == b"key-two"


def test_a_version_that_no_longer_verifies_is_not_accepted(secret: FakeSecret, clock: Clock) -> None:
    secret.rotate("v2", "key-two")
    secret.rotate("v3", "key-three")  # v1 is now neither current nor previous
    secret.stages["deprecated"] = ("v1", "key-one")
    keys = SigningKeys(fetch=secret.fetch, clock=clock)

    assert keys.find("v3") is not None
    assert keys.find("v2") is not None
    assert keys.find("v1") is None


def test_forged_kids_do_not_flood_secrets_manager(secret: FakeSecret, clock: Clock) -> None:
    keys = SigningKeys(fetch=secret.fetch, clock=clock)
    keys.current()
    reads = secret.reads

    for attempt in range(1000):
        assert keys.find(f"forged-{attempt}") is None
    assert secret.reads == reads + 1  # one lookup per UNKNOWN_KID_RETRY_SECONDS at most
    clock.now += UNKNOWN_KID_RETRY_SECONDS + 1
    keys.find("forged-again")
    assert secret.reads == reads + 2


def test_a_secret_without_a_current_version_is_an_error(clock: Clock) -> None:
    keys = SigningKeys(fetch=lambda stage: None, clock=clock)
    with pytest.raises(KeyUnavailable):
        keys.current()
