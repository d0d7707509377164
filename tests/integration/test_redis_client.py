"""The boards' Redis client against what ElastiCache Serverless does, on real Redis servers: cluster mode (no SELECT,
one slot per script or command) on a one-node cluster (the shape serverless shows: every slot on one node) and on a
three-node one; a script cache that forgets (NOSCRIPT); RESP2; IAM auth. Each board call goes through the client the
functions make from their environment (`board.redis_client`)."""

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import NoScriptError

from leaderboard import board
from leaderboard.board import Board, BoardUnavailable, PlayerTotal, RedisClient
from leaderboard.cache_auth import IamAuth
from local.processes import stop_process
from local.services import start_redis
from tests.integration import redis_cluster
from tests.integration.conftest import REDIS_URL, RedisServer

NOW_MS = 1_795_795_200_000  # 2026-11-28T00:00:00Z
SET_TOTALS_SHA = hashlib.sha1(board.BOARD_SCRIPTS["set_totals"].encode(), usedforsecurity=False).hexdigest()

UseRedis = Callable[..., RedisClient]


@pytest.fixture(scope="module")
def one_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_cluster.one_node(tmp_path_factory.mktemp("one-node-cluster")) as url:
        yield url


@pytest.fixture
def use_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[UseRedis]:
    """Configure the functions' Redis as template.yaml would (`use_redis(url, REDIS_CLUSTER=..., ...)`), under a key
    prefix of the test's own; return the client they make of it. The prefix's keys go at the end."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    used: list[RedisClient] = []

    def use(url: str, **variables: str) -> RedisClient:
        for name, value in {"REDIS_URL": url, "REDIS_KEY_PREFIX": prefix, "REDIS_CLUSTER": "", **variables}.items():
            monkeypatch.setenv(name, value)
        board._redis.cache_clear()
        used.append(board.redis_client())
        return used[-1]

    yield use
    for client in used:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
    board._redis.cache_clear()


def total(user_id: str, points: int) -> PlayerTotal:
    return PlayerTotal(user_id, user_id.title(), points, reached_at_ms=NOW_MS)


def every_board_call(client: RedisClient) -> None:
    """Each script and command a season's board, the read limits and the restoration send, once, with what they answer
    when they work."""
    scoreboard = Board(f"board-{uuid.uuid4().hex[:8]}", "all", client)
    written = scoreboard.set_totals([total("ann", 30), total("bob", 20)])
    assert (written.applied, written.lease is not None) == (2, True)
    assert [standing.user_id for standing in scoreboard.top()] == ["ann", "bob"]
    assert (scoreboard.size(), scoreboard.page(1, 1)[0].user_id) == (2, "bob")
    assert scoreboard.standing("bob") is not None
    scoreboard.count_viewer()
    snapshot = scoreboard.snapshot()
    assert (snapshot.viewers, [standing.score for standing in snapshot.top]) == (1, [30, 20])

    lease = scoreboard.adopt(str(written.lease))
    assert scoreboard.watch("bob") is None  # owed their standing; the publisher holding the lease tells them
    changes = scoreboard.rank_changes(lease, limit=10)
    assert [change.standing.user_id for change in changes.changes] == ["bob"]
    scoreboard.renew(lease)
    assert scoreboard.finish_cycle(lease, snapshot, more=False) is False  # up to date: the lease is given back
    assert scoreboard.claim() is None

    removal = scoreboard.remove("bob", removed_at_ms=NOW_MS + 1)
    assert removal.applied == 1
    scoreboard.abandon(str(removal.lease))
    scoreboard.lift("bob")
    assert [standing.user_id for standing in scoreboard.top()] == ["ann"]

    expires_at_ms = int(time.time() * 1000) + 60_000
    assert [board.count_in_window("reads", "198.51.100.0/24", 1, expires_at_ms) for _ in range(2)] == [1, 2]

    restoration = board.restoration()
    token = restoration.begin(hold_ms=60_000)
    assert (restoration.needed(), token is not None, restoration.begin(hold_ms=60_000)) == (True, True, None)
    assert restoration.end(str(token), restored_at_ms=NOW_MS) is True
    assert restoration.needed() is False


# --- cluster mode ---------------------------------------------------------------------------------------------------


def test_the_plain_client_serves_a_one_node_cluster_as_elasticache_serverless_shows_itself(
    use_redis: UseRedis, one_node_cluster: str
) -> None:
    client = use_redis(one_node_cluster)

    assert type(client) is redis.Redis  # what the functions use unless REDIS_CLUSTER says otherwise
    every_board_call(client)
    # The node keeps the cluster's rules: a client that selected a database, or a command across slots, would fail.
    with pytest.raises(redis.ResponseError, match="SELECT is not allowed in cluster mode"):
        client.execute_command("SELECT", 15)
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
        client.mset({"{one}key": 1, "{other}key": 2})


def test_the_cluster_client_serves_every_board_call_on_three_nodes(
    use_redis: UseRedis, three_node_cluster: RedisServer
) -> None:
    client = use_redis(three_node_cluster.url, REDIS_CLUSTER="true")

    assert type(client) is redis.RedisCluster
    assert len(client.get_primaries()) == 3
    every_board_call(client)


def test_a_plain_client_on_three_nodes_is_sent_elsewhere_for_most_boards(
    use_redis: UseRedis, three_node_cluster: RedisServer
) -> None:
    client = use_redis(three_node_cluster.url)
    outcomes = []
    for _ in range(12):
        try:
            outcomes.append(Board(f"board-{uuid.uuid4().hex[:8]}", "all", client).size())
        except BoardUnavailable as unavailable:
            outcomes.append(str(unavailable.__cause__))

    # A board on the node it asked answers; the others are on a node of their own (MOVED <slot> <node>).
    assert 0 in outcomes
    assert any(isinstance(outcome, str) and ":" in outcome for outcome in outcomes), outcomes


def test_a_cluster_client_needs_the_cluster_to_answer_or_the_board_is_unavailable(use_redis: UseRedis) -> None:
    with pytest.raises(BoardUnavailable):
        use_redis("redis://127.0.0.1:1/0", REDIS_CLUSTER="true")  # nothing listens on port 1


# --- a script cache that forgets ------------------------------------------------------------------------------------


def configured(use_redis: UseRedis, redis_server: RedisServer) -> RedisClient:
    return use_redis(redis_server.url, REDIS_CLUSTER=str(redis_server.cluster).lower())


def test_a_script_the_cache_lost_is_loaded_again(
    use_redis: UseRedis, redis_server: RedisServer, redis_client: RedisClient
) -> None:
    client = configured(use_redis, redis_server)
    scoreboard = Board(f"board-{uuid.uuid4().hex[:8]}", "all", client)
    scoreboard.set_totals([total("ann", 10)])

    redis_client.script_flush()  # as a failover does (on every node of a cluster)
    assert redis_client.script_exists(SET_TOTALS_SHA) == [False]
    written = scoreboard.set_totals([total("ann", 20)])

    assert written.applied == 1
    assert scoreboard.top()[0].score == 20
    assert redis_client.script_exists(SET_TOTALS_SHA) == [True]


def test_a_script_the_cache_keeps_losing_is_sent_whole(
    use_redis: UseRedis, redis_server: RedisServer, redis_client: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = configured(use_redis, redis_server)
    sent_whole: list[Any] = []
    real_eval = client.eval

    def forgetful_evalsha(*args: Any) -> Any:
        raise NoScriptError("No matching script. Please use EVAL.")

    def recorded_eval(*args: Any) -> Any:
        sent_whole.append(args)
        return real_eval(*args)

    # NOSCRIPT even right after SCRIPT LOAD, as ElastiCache Serverless has been reported to answer.
    monkeypatch.setattr(client, "evalsha", forgetful_evalsha)
    monkeypatch.setattr(client, "eval", recorded_eval)
    scoreboard = Board(f"board-{uuid.uuid4().hex[:8]}", "all", client)

    written = scoreboard.set_totals([total("ann", 10)])

    assert written.applied == 1
    assert scoreboard.top()[0].score == 10
    assert len(sent_whole) == 1
    assert "local function changed" in sent_whole[0][0]  # the script's body, not its SHA1


# --- the connection -------------------------------------------------------------------------------------------------


def test_every_connection_speaks_resp2(use_redis: UseRedis, redis_server: RedisServer) -> None:
    client = configured(use_redis, redis_server)

    for node in client.get_primaries() if isinstance(client, redis.RedisCluster) else [client]:
        info = client.client_info(target_nodes=node) if isinstance(client, redis.RedisCluster) else client.client_info()
        assert info["resp"] == "2"


@pytest.fixture
def cache_with_an_iam_user(tmp_path: Path) -> Iterator[str]:
    """A Redis whose only user is `leaderboard-app`, taking any password (the stand-in for ElastiCache's IAM check)."""
    process, url = start_redis(tmp_path / "redis.log")
    try:
        with redis.Redis.from_url(url) as admin:
            admin.acl_setuser("leaderboard-app", enabled=True, nopass=True, keys=["*"], commands=["+@all"])
            admin.acl_setuser("default", enabled=False)
        yield url
    finally:
        stop_process(process)


def test_with_an_iam_user_each_connection_authenticates_as_that_user_with_a_signed_token(
    cache_with_an_iam_user: str, use_redis: UseRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    tokens: list[str] = []
    real_token = IamAuth.token

    def recorded_token(auth: IamAuth) -> str:
        tokens.append(real_token(auth))
        return tokens[-1]

    monkeypatch.setattr(IamAuth, "token", recorded_token)

    client = use_redis(cache_with_an_iam_user, REDIS_IAM_USER="leaderboard-app", CACHE_NAME="leaderboard-board")
    every_board_call(client)

    assert client.client_info()["user"] == "leaderboard-app"
    assert len(tokens) == 1  # one token for the pool's connections, for 10 minutes
    assert tokens[0].startswith("leaderboard-board/?Action=connect&User=leaderboard-app&ResourceType=ServerlessCache&")


def test_without_an_iam_user_the_client_connects_without_auth(use_redis: UseRedis) -> None:
    client = use_redis(REDIS_URL, REDIS_IAM_USER="")

    assert isinstance(client, redis.Redis)
    assert client.connection_pool.connection_kwargs.get("credential_provider") is None
    assert client.client_info()["user"] == "default"
