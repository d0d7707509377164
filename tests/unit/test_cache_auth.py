"""ElastiCache IAM auth tokens (cache_auth.py), signed with fixed fake credentials at a fixed moment; and the board's
client taking them only when REDIS_IAM_USER is set."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.model import ServiceId
from botocore.signers import RequestSigner

from leaderboard import board
from leaderboard.cache_auth import REUSE_SECONDS, IamAuth

LAYER = str(Path(__file__).resolve().parents[2] / "layers" / "common")
CREDENTIALS = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "the-session-token")
SIGNED_AT = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT.replace(tzinfo=None))


def iam_auth(clock: list[float] | None = None) -> IamAuth:
    moments = clock if clock is not None else [0.0]
    return IamAuth("leaderboard-app", "leaderboard-board", "eu-west-1", lambda: CREDENTIALS, lambda: moments[0])


def test_the_token_is_a_connect_request_for_the_cache_presigned_for_elasticache_for_15_minutes() -> None:
    user, token = iam_auth().get_credentials()

    assert user == "leaderboard-app"
    assert not token.startswith("https://")
    address = urlsplit(f"https://{token}")
    query = {name: values[0] for name, values in parse_qs(address.query, strict_parsing=True).items()}
    assert (address.hostname, address.path) == ("leaderboard-board", "/")
    assert query.pop("X-Amz-Signature").isalnum()
    assert query == {
        "Action": "connect",
        "User": "leaderboard-app",
        "ResourceType": "ServerlessCache",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "AKIDEXAMPLE/20261201/eu-west-1/elasticache/aws4_request",
        "X-Amz-Date": "20261201T120000Z",
        "X-Amz-Expires": "900",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Security-Token": "the-session-token",
    }


def test_the_token_is_what_botocores_request_signer_presigns_as_the_aws_guide_does() -> None:
    session = botocore.session.get_session()
    credentials, emitter = Credentials(*CREDENTIALS), session.get_component("event_emitter")
    signer = RequestSigner(ServiceId("elasticache"), "eu-west-1", "elasticache", "v4", credentials, emitter)
    url = "https://leaderboard-board/?Action=connect&User=leaderboard-app&ResourceType=ServerlessCache"
    request = {"method": "GET", "url": url, "body": {}, "headers": {}, "context": {}}

    presigned = signer.generate_presigned_url(request, "connect", expires_in=900, region_name="eu-west-1")

    assert iam_auth().token() == presigned.removeprefix("https://")


def test_a_token_is_reused_for_10_minutes_then_made_anew() -> None:
    clock = [1_000.0]
    auth = iam_auth(clock)
    first = auth.get_credentials()
    clock[0] += REUSE_SECONDS - 1
    reused = auth.get_credentials()
    clock[0] += 1
    renewed_at = SIGNED_AT.replace(minute=10, tzinfo=None)
    with pytest.MonkeyPatch.context() as later:
        later.setattr(botocore.auth, "get_current_datetime", lambda: renewed_at)
        renewed = auth.get_credentials()

    assert reused == first
    assert renewed != first
    assert "X-Amz-Date=20261201T121000Z" in renewed[1]


# --- the board's client ---------------------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://leaderboard-board.serverless.euw1.cache.amazonaws.com:6379/0")
    board._redis.cache_clear()


def test_with_an_iam_user_the_client_asks_iam_auth_for_every_connections_credentials(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = {"REDIS_IAM_USER": "leaderboard-app", "CACHE_NAME": "leaderboard-board", "AWS_REGION": "eu-west-1"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    client = board.redis_client()
    options = client.connection_pool.connection_kwargs
    board._redis.cache_clear()

    assert isinstance(options["credential_provider"], IamAuth)
    assert options["protocol"] == 2


def test_without_an_iam_user_botocore_is_never_imported() -> None:
    # A reader's cold start: its client made, with no IAM auth and none of the ~50 ms of botocore's signer.
    code = "import json, sys; from leaderboard import board; board.redis_client(); print(json.dumps(list(sys.modules)))"
    environment = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_IAM_USER": "", "PYTHONPATH": LAYER}

    loaded = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )

    modules = json.loads(loaded.stdout)
    assert "redis" in modules
    # (Powertools imports the bare `botocore` package, for its version: 0.5 ms.)
    assert [name for name in modules if name.startswith(("botocore.", "leaderboard.cache_auth"))] == []
