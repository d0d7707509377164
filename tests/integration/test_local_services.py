"""The local stack's services: moto with template.yaml's resources, and Redis, started clean every time."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from local.processes import pid_alive, stop_process
from local.services import LocalServices, aws_session, start_redis
from local.template import Template

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def template() -> Template:
    return Template(PROJECT_ROOT / "template.yaml")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis that belongs to someone else (as REDIS_URL would)."""
    process, url = start_redis(tmp_path / "someone-elses-redis.log")
    yield url
    stop_process(process)


def test_the_template_resources_are_created_in_moto_and_everything_stops(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    services = LocalServices(template, tmp_path, lambda _: None)
    endpoints = services.start()
    try:
        session = aws_session(endpoints.session_token)
        dynamodb = session.client("dynamodb", endpoint_url=endpoints.aws_endpoint_url)
        secretsmanager = session.client("secretsmanager", endpoint_url=endpoints.aws_endpoint_url)

        tables = dynamodb.list_tables()["TableNames"]
        ttl = dynamodb.describe_time_to_live(TableName="leaderboard-local-TokenFamiliesTable")
        key = dynamodb.describe_table(TableName="leaderboard-local-UsersTable")["Table"]["KeySchema"]
        secret_arn = endpoints.identities["SigningKeySecret"].ref
        secret = json.loads(secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"])
        redis_pong = redis.Redis.from_url(endpoints.redis_url).ping()
    finally:
        pids = services.child_pids()
        services.stop()

    assert set(tables) >= {f"leaderboard-local-{name}" for name in ("UsersTable", "TokenFamiliesTable")}
    assert ttl["TimeToLiveDescription"] == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}
    assert key == [{"AttributeName": "username_key", "KeyType": "HASH"}]
    # GenerateSecretString: {"signing_key": <64 characters, no punctuation>} as CloudFormation would make it.
    assert list(secret) == ["signing_key"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", secret["signing_key"])
    assert secret_arn.startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:leaderboard-local-")
    assert redis_pong is True
    assert set(pids) == {"moto", "redis"}
    assert not any(pid_alive(pid) for pid in pids.values())


def test_with_redis_url_only_the_leaderboard_prefix_is_cleared_and_that_redis_is_left_running(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_redis: str
) -> None:
    client = redis.Redis.from_url(own_redis)
    client.set("leaderboard:board", "stale")
    client.set("leaderboard:user:1", "stale")
    client.set("someone-else:data", "precious")
    monkeypatch.setenv("REDIS_URL", own_redis)

    services = LocalServices(template, tmp_path, lambda _: None)
    endpoints = services.start()
    started = set(services.child_pids())
    services.stop()

    assert endpoints.redis_url == own_redis
    assert started == {"moto"}
    assert client.keys("*") == [b"someone-else:data"]
    assert client.ping() is True
