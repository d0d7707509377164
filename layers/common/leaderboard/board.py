"""The boards in Redis: one board's season is a sorted set and its helpers; this module alone knows the Redis keys.

A season's keys share a hash tag, `<prefix>:{<board>:<season>}:...` (one cluster slot: its scripts touch them
together), and every script is given every key it touches (ElastiCache refuses scripts that reach for undeclared keys):
- `...:ranking` sorted set; score = the player's points (exact: they stay far below 2^53); member = 6 bytes (2^48 - 1 -
  the moment the points were reached, in ms, big-endian) + user_id + ":" + display name. Among equal points
  ZREVRANGE puts whoever reached them first first, and a page of standings is one ZREVRANGE, names included;
- `...:players:<n>` 2^17 small hashes, user_id -> the member's 6 bytes + display name: where to find a player's member
  (and NUL + user_id -> the moment a moderator removed the player, for the few removed: see _REMOVE).
  A player lands in hash n = crc32(user_id) mod 2^17: at 10 million players ~76 a hash, so each stays in Redis's
  compact listpack encoding (up to 128 entries), about 45 bytes a player instead of about 125 in one big hash;
- `...:seq` the season's version: every change raises it, to at least the writer's clock in microseconds, so it keeps
  rising even after Redis restarts empty (clients ignore a board older than the one they show). The clock is the
  caller's: no script calls TIME, which ElastiCache Serverless has been reported to refuse inside scripts;
- `...:top_seq` the version at which the top 10 last changed; `...:published_top_seq` and `...:published_seq`, the
  ones last published;
- `...:publishing` the publishing lease: while it is held, one publisher is bound to publish every change (live.py);
- `...:watchers` sorted set user_id -> the moment (ms) their subscription to their own channel lapses: the players
  watching their standing live (renewed by every subscribe, see WATCH_MS); `...:watching` hash user_id -> their
  member (kept by every write, so the publisher finds their standing without the players' hashes); `...:welcome` set
  of the watchers who just subscribed and are owed their standing at once;
- `...:notified` hash user_id -> "rank|score" last published to that player (`...:notified_next`: the ones a
  publishing cycle is publishing, until its events are queued).
A season that ends stays readable for its board's `readable_days`, then its keys expire on their own: every script
that writes one sets its expiry (ARGV[1], 0 for a board that never resets).
A board's audience is counted across its seasons (so a reset does not look like an empty room): `<prefix>:{<board>}:
viewers:<window>`, subscriptions to its channel per AUDIENCE_WINDOW_MS.
A rate limit's counter (read_limits.py) is `<prefix>:{rate:<limit>:<subject>}:<window>`: a hash tag of its own, so
counters spread over the cluster's slots and each command touches one key.
The boards' restoration (RebuildBoard's `if_lost` schedule, see `Restoration`): `<prefix>:{restore}:restored`, the
moment (ms) a rebuild last restored every board, which a Redis that came back empty lacks; `...:rebuilding`, the
token of the rebuild under way.

Writes are version-free: the ledger only ever moves a player up a season's ranking (points only grow; a `best`
board's equal score counts only if reached earlier), so a write applies only if it moves the player up, and a late
redelivery or a rebuild racing the consumer changes nothing it should not.

The client: ElastiCache Serverless runs in cluster mode (no SELECT; a command or script must keep to one slot) but
shows every slot on one endpoint, so the plain `redis.Redis` serves it; REDIS_CLUSTER=true makes it a
`redis.RedisCluster`, for a cache of several shards (the tests run the boards through one against a local
three-node cluster, and the plain client against a one-node cluster). RESP2, with ElastiCache IAM auth when
REDIS_IAM_USER is set (cache_auth.py); a script the cache has lost is sent whole (`_Script`).
"""

import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import redis
from redis.exceptions import NoScriptError, RedisClusterException

from leaderboard.config import settings
from leaderboard.game import BoardDefinition
from leaderboard.problems import ServiceUnavailable
from leaderboard.seasons import Season

# The member's first 6 bytes: moments up to 2^48 - 1 ms (the year 10889).
_MOMENT_BYTES = 6
_LATEST = 2 ** (8 * _MOMENT_BYTES) - 1
PLAYER_HASHES = 2**17
AROUND = 4
TOP = 10
# How long the publishing lease outlives its holder's last sign of life: a publisher that died stops blocking the next
# one after this.
LEASE_MS = 10_000
# Clients renew their subscriptions every AUDIENCE_WINDOW_MS (the live feed's contract): a board's audience is the
# subscriptions counted over the last window, and a watcher who has not renewed for two windows has left.
AUDIENCE_WINDOW_MS = 300_000
WATCH_MS = 2 * AUDIENCE_WINDOW_MS

_KEY_NAMES = (
    *("ranking", "seq", "top_seq", "publishing", "published_top_seq", "published_seq"),
    *("watchers", "watching", "welcome", "notified", "notified_next"),
)
# Every script starts by naming its keys (the players' hashes it is given come after them, see `players_key`) and
# taking off its first argument, the moment its keys expire (0: never): the ARGV each script lists come after it.
_HEADER = f"""local {", ".join(_KEY_NAMES)} = unpack(KEYS)
local TOP, MOMENT_BYTES = {TOP}, {_MOMENT_BYTES}
local expire_at = tonumber(table.remove(ARGV, 1))
local function players_hash(n) return KEYS[{len(_KEY_NAMES)} + n] end  -- the n-th players' hash the call was given
local function member_of(user, found)  -- the ranking member of a player, from their entry in a players' hash
  return string.sub(found, 1, MOMENT_BYTES) .. user .. ':' .. string.sub(found, MOMENT_BYTES + 1)
end
local function top() return redis.call('ZREVRANGE', ranking, 0, TOP - 1, 'WITHSCORES') end
local function fence_of(user)  -- a removed player's fence: the field beside their entry (no user id holds a NUL)
  return '\\0' .. user
end
local function expire(key) if expire_at > 0 then redis.call('PEXPIREAT', key, expire_at) end end
local function set(key, value)
  if expire_at > 0 then redis.call('SET', key, value, 'PXAT', expire_at) else redis.call('SET', key, value) end
end
local function moment_rank(member)  -- the member's first 6 bytes as a number: higher = reached earlier
  local rank = 0
  for _, byte in ipairs({{string.byte(member, 1, MOMENT_BYTES)}}) do rank = rank * 256 + byte end
  return rank
end
"""
# Lua's unpack() takes at most a few thousand values: longer lists go to Redis in slices.
_IN_SLICES = """
local function in_slices(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end
"""

# A change to the ranking (ARGV: lease token, lease ms, the writer's clock in microseconds, 1 if a change should wake a
# publisher, 0 for a season no longer shown live): the season's version rises, the top 10's too if it changed, and
# unless a publisher holds the lease the change takes it. Returns {applied, 1 if the lease was taken}.
_CHANGED = """
local function changed(applied, top_before)
  expire(ranking)
  local new_seq = math.max(tonumber(redis.call('GET', seq) or '0') + 1, tonumber(ARGV[3]))
  set(seq, string.format('%.0f', new_seq))
  local top_after = top()
  local top_changed = #top_before ~= #top_after
  for i = 1, #top_after do top_changed = top_changed or top_before[i] ~= top_after[i] end
  if top_changed then set(top_seq, string.format('%.0f', new_seq)) end
  if ARGV[4] ~= '1' then return {applied, 0} end
  return {applied, redis.call('SET', publishing, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0}
end
"""

# ARGV: as _CHANGED, then groups of (user_id, points, the member's 6 bytes, display name), one per
# player, whose players' hashes follow the named keys in the same order. Returns {applied, 1 if this call took the
# publishing lease}.
_SET_TOTALS = (
    _CHANGED
    + """
local applied = 0
local top_before = top()
local player = 0
for i = 5, #ARGV, 4 do
  player = player + 1
  local players, user, points, name = players_hash(player), ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 3]
  local member = ARGV[i + 2] .. user .. ':' .. name
  local found, fence = unpack(redis.call('HMGET', players, user, fence_of(user)))
  -- Points reached before the player was removed are refused (later moments rank lower).
  local up = not fence or moment_rank(member) < moment_rank(fence)
  if up and found then
    local held = member_of(user, found)
    local held_points = tonumber(redis.call('ZSCORE', ranking, held))
    if held_points then
      up = points > held_points or (points == held_points and moment_rank(member) > moment_rank(held))
      if up then redis.call('ZREM', ranking, held) end
    end
  end
  if up then
    redis.call('ZADD', ranking, points, member)
    redis.call('HSET', players, user, ARGV[i + 2] .. name)
    expire(players)
    if redis.call('ZSCORE', watchers, user) then
      redis.call('HSET', watching, user, member)
      expire(watching)
    end
    applied = applied + 1
  end
end
if applied == 0 then return {0, 0} end
return changed(applied, top_before)
"""
)

# ARGV: as _CHANGED, then user_id, the 6 bytes of the moment of the removal. Their players' hash follows the named keys.
# Takes the player off the ranking and leaves a fence beside their entry in the players' hash (field NUL + user_id, the
# moment's 6 bytes): from then on a write of points reached up to that moment (one in flight when they were removed, a
# rebuild that read the ledger before) is refused, even after the player scores again; points reached later count.
# Returns as _CHANGED.
_REMOVE = (
    _CHANGED
    + """
local top_before = top()
local players, user = players_hash(1), ARGV[5]
local found = redis.call('HGET', players, user)
local removed = 0
if found then
  removed = redis.call('ZREM', ranking, member_of(user, found))
  redis.call('HDEL', players, user)
end
redis.call('HSET', players, fence_of(user), ARGV[6])
expire(players)
redis.call('HDEL', watching, user)
if removed == 0 then return {0, 0} end
return changed(removed, top_before)
"""
)

# ARGV: user_id. Their players' hash follows the named keys. Takes down a removal's fence.
_LIFT = """
redis.call('HDEL', players_hash(1), fence_of(ARGV[1]))
return 0
"""

# ARGV: user_id, how many above and below. Their players' hash follows the named keys. Returns false, or
# {their rank - 1, the first rank - 1 of the entries, the entries with their points}.
_STANDING = """
local found = redis.call('HGET', players_hash(1), ARGV[1])
if not found then return false end
local rank = redis.call('ZREVRANK', ranking, member_of(ARGV[1], found))
if not rank then return false end
local first = math.max(rank - tonumber(ARGV[2]), 0)
return {rank, first, redis.call('ZREVRANGE', ranking, first, rank + tonumber(ARGV[2]), 'WITHSCORES')}
"""

# Returns the versions (season, top 10, top 10 published) and the top 10.
_SNAPSHOT = """
local function get(key) return redis.call('GET', key) or '0' end
return {get(seq), get(top_seq), get(published_top_seq), top()}
"""

# ARGV: user_id, the moment (ms) the watch lapses, lease token, lease ms. Their players' hash follows the
# named keys. A player subscribed to their own channel: they watch until then, and are owed their standing at once if
# they have one (then, unless a publisher holds the lease, this call takes it: 1). Returns 0 otherwise.
_WATCH = """
redis.call('ZADD', watchers, ARGV[2], ARGV[1])
expire(watchers)
local found = redis.call('HGET', players_hash(1), ARGV[1])
if not found then return 0 end
redis.call('HSET', watching, ARGV[1], member_of(ARGV[1], found))
redis.call('SADD', welcome, ARGV[1])
expire(watching)
expire(welcome)
return redis.call('SET', publishing, ARGV[3], 'NX', 'PX', ARGV[4]) and 1 or 0
"""

# ARGV: the publisher's lease, lease ms, the clock (ms), where to start among the watchers, the most changes to take.
# Unless another publisher holds the lease (then false): forgets the watchers who left; then, going round the watchers
# from `start`, takes up to `limit` whose standing is not the one last published to them (or who are owed it) and
# stages it in `notified_next`: it becomes the one published (`notified`) only once the cycle's events are queued
# (_FINISH_CYCLE), so a failed cycle is redone whole. Returns {board version, 1 if more changes wait, where the next
# cycle starts, then (user, rank, score, previous "rank|score" or '', name) per change}.
_RANK_CHANGES = (
    _IN_SLICES
    + """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return false end
redis.call('SET', publishing, ARGV[1], 'PX', ARGV[2])
local left = redis.call('ZRANGEBYSCORE', watchers, '-inf', ARGV[3])
if #left > 0 then
  redis.call('ZREMRANGEBYSCORE', watchers, '-inf', ARGV[3])
  in_slices('HDEL', notified, left)
  in_slices('HDEL', watching, left)
  in_slices('SREM', welcome, left)
end
redis.call('DEL', notified_next)
local all = redis.call('ZRANGE', watchers, 0, -1)
local start, limit = tonumber(ARGV[4]) % math.max(#all, 1), tonumber(ARGV[5])
local result = {redis.call('GET', seq) or '0', 0, 0}
local taken = 0
for step = 0, #all - 1 do
  local index = (start + step) % #all
  local user = all[index + 1]
  local standing = false
  local member = redis.call('HGET', watching, user)
  local rank, score
  if member then
    rank = redis.call('ZREVRANK', ranking, member)
    if rank then
      score = redis.call('ZSCORE', ranking, member)
      standing = (rank + 1) .. '|' .. score
    end
  end
  if not standing then
    redis.call('SREM', welcome, user)  -- nothing to tell them yet
  else
    local previous = redis.call('HGET', notified, user)
    if previous ~= standing or redis.call('SISMEMBER', welcome, user) == 1 then
      if taken == limit then
        result[2], result[3] = 1, index
        break
      end
      taken = taken + 1
      local name = string.sub(member, MOMENT_BYTES + #user + 2)
      for _, value in ipairs({user, tostring(rank + 1), score, previous or '', name}) do
        result[#result + 1] = value
      end
      redis.call('HSET', notified_next, user, standing)
      expire(notified_next)
    end
  end
end
return result
"""
)

# ARGV: lease token, the seq just published, the top_seq just published, lease ms, 1 if the cycle left changes for the
# next. Returns 1 if changes wait (the lease is renewed, or taken again if it expired meanwhile: the writes made while
# it was held woke nobody), 0 if the board is up to date (the lease is released), -1 if another publisher holds the
# lease (it took over, and answers for every change since).
_FINISH_CYCLE = """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return -1 end
set(published_top_seq, ARGV[3])
set(published_seq, ARGV[2])
local told = redis.call('HGETALL', notified_next)
for i = 1, #told, 2 do
  redis.call('HSET', notified, told[i], told[i + 1])
  redis.call('SREM', welcome, told[i])
end
if #told > 0 then expire(notified) end
redis.call('DEL', notified_next)
local up_to_date = (redis.call('GET', seq) or '0') == ARGV[2] and ARGV[5] == '0'
if up_to_date and redis.call('SCARD', welcome) == 0 then
  if holder then redis.call('DEL', publishing) end
  return 0
end
redis.call('SET', publishing, ARGV[1], 'PX', ARGV[4])
return 1
"""

# ARGV: lease token, lease ms, the token to hold it with from now on (the same one to renew it, a fresh one to adopt
# it). Keeps a publisher's lease alive, taking it back if it expired; 0 if another publisher holds it.
_HOLD = """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', publishing, ARGV[3], 'PX', ARGV[2])
return 1
"""

# ARGV: lease token. Gives the lease up, if it is still this publisher's.
_ABANDON = """
if redis.call('GET', publishing) == ARGV[1] then redis.call('DEL', publishing) end
return 0
"""

# ARGV: lease token, lease ms. The safety net: takes the lease if something waits to be published (a change, or a
# watcher owed their standing) and nobody holds the lease (a wake-up was lost). 1 if taken.
_CLAIM = """
local behind = (redis.call('GET', seq) or '0') ~= (redis.call('GET', published_seq) or '0')
if not behind and redis.call('SCARD', welcome) == 0 then return 0 end
return redis.call('SET', publishing, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""

BOARD_SCRIPTS = {
    name: _HEADER + body
    for name, body in {
        "set_totals": _SET_TOTALS,
        "remove": _REMOVE,
        "lift": _LIFT,
        "standing": _STANDING,
        "snapshot": _SNAPSHOT,
        "watch": _WATCH,
        "rank_changes": _RANK_CHANGES,
        "finish_cycle": _FINISH_CYCLE,
        "hold": _HOLD,
        "abandon": _ABANDON,
        "claim": _CLAIM,
    }.items()
}

_RESTORE_KEY_NAMES = ("restored", "rebuilding")
# ARGV: the rebuild's token, the moment (ms) it completed ('' if it failed). Releases the lock if the rebuild still
# holds it and, if it completed, marks the boards restored. 1 if it still held the lock (else Redis lost it meanwhile).
END_REBUILD_SCRIPT = f"""local {", ".join(_RESTORE_KEY_NAMES)} = unpack(KEYS)
if redis.call('GET', rebuilding) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', restored, ARGV[2]) end
redis.call('DEL', rebuilding)
return 1
"""


@dataclass(frozen=True)
class PlayerTotal:
    """A player's points on a season of a board, as the ledger holds them, and the moment they were reached."""

    user_id: str
    display_name: str
    total: int
    reached_at_ms: int


@dataclass(frozen=True)
class Standing:
    user_id: str
    user_name: str
    rank: int
    score: int

    def body(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "user_name": self.user_name, "rank": self.rank, "score": self.score}


@dataclass(frozen=True)
class Written:
    """What `Board.set_totals` did: how many totals it applied, and the publishing lease if the write took it (then
    the writer must wake a publisher, see live.py)."""

    applied: int
    lease: str | None


@dataclass(frozen=True)
class Snapshot:
    """The board as one instant saw it: its version, the top 10 with the version at which that last changed, and its
    audience (subscriptions to its channel over the last AUDIENCE_WINDOW_MS, the window before weighed by how much of
    it the last window still covers)."""

    seq: int
    top_seq: int
    published_top_seq: int
    top: list[Standing]
    viewers: float

    @property
    def top_is_new(self) -> bool:
        """The top 10 changed since it was last published."""
        return self.top_seq > self.published_top_seq


@dataclass(frozen=True)
class RankChange:
    standing: Standing
    previous_rank: int | None


@dataclass(frozen=True)
class RankChanges:
    """What one publishing cycle tells the watchers: the board's version, their new standings, and whether more
    changes than the cycle could take wait for the next one (which starts at `next_start` among the watchers)."""

    seq: int
    changes: list[RankChange]
    more: bool
    next_start: int


class LeaseLost(Exception):
    """Another publisher holds the publishing lease: it answers for the changes from here on."""


class BoardUnavailable(ServiceUnavailable):
    """Redis could not be reached: readers get 503, the consumer fails its batch for SQS to deliver again."""

    def __init__(self) -> None:
        super().__init__("The leaderboard is unavailable for a moment; try again shortly.", retry_after=1)


RedisClient = redis.Redis | redis.RedisCluster
# What a call to Redis raises when it could not be done (a cluster client's own errors are no RedisError).
_REDIS_ERRORS = (redis.RedisError, RedisClusterException)


def redis_client() -> RedisClient:
    """The configured Redis (REDIS_URL, REDIS_CLUSTER, REDIS_IAM_USER), one client per process."""
    return _redis(settings.redis_url, settings.redis_cluster, settings.redis_iam_user)


@cache
def _redis(url: str, cluster: bool, iam_user: str) -> RedisClient:
    # One small pool per process (per node for a cluster client), reused by warm invocations; short timeouts so a dead
    # Redis fails fast. RESP2, which every ElastiCache engine speaks: redis-py 8 would open with HELLO 3, which no AWS
    # page says ElastiCache Serverless accepts.
    options: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 2, "max_connections": 4, "protocol": 2}
    if iam_user:
        from leaderboard.cache_auth import IamAuth  # deferred on purpose: see cache_auth.py

        options["credential_provider"] = IamAuth(iam_user, settings.cache_name, settings.aws_region)
    if not cluster:
        return redis.Redis.from_url(url, **options)
    try:
        return redis.RedisCluster.from_url(url, **options)
    except _REDIS_ERRORS as exc:  # a cluster client asks the nodes who owns which slot as it is made
        raise BoardUnavailable from exc


class _Script:
    """A Lua script run by its SHA1 (EVALSHA; redis-py loads it again once if the cache lacks it), and sent whole
    (EVAL: routed by key, and cached on that node) if the cache still lacks it: ElastiCache Serverless has been
    reported to answer NOSCRIPT intermittently after SCRIPT LOAD, and a failover empties a node's script cache."""

    def __init__(self, client: RedisClient, body: str) -> None:
        self._client = client
        self._body = body
        self._by_sha = client.register_script(body)

    def __call__(self, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        try:
            try:
                return self._by_sha(keys=keys, args=args)
            except NoScriptError:
                return self._client.eval(self._body, len(keys), *keys, *args)
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc


class Board:
    """One season of one board in Redis. `clock` (epoch seconds) is what every version, lease and window is measured
    with; the season's keys expire at `expires_at_ms` (None: never)."""

    def __init__(
        self,
        name: str,
        season: str,
        client: RedisClient,
        clock: Callable[[], float] = time.time,
        expires_at_ms: int | None = None,
    ) -> None:
        self.name = name
        self.season = season
        prefix = settings.redis_key_prefix
        self._tag = f"{prefix}:{{{name}:{season}}}"
        self._audience_tag = f"{prefix}:{{{name}}}"
        self._keys = [f"{self._tag}:{suffix}" for suffix in _KEY_NAMES]
        self._client = client
        self._clock = clock
        self._expires_at_ms = expires_at_ms or 0
        self._scripts = {name: _Script(client, body) for name, body in BOARD_SCRIPTS.items()}

    @property
    def keys(self) -> dict[str, str]:
        """The season's Redis keys by name (the players' hashes aside: see `players_key` and `key_pattern`)."""
        return dict(zip(_KEY_NAMES, self._keys, strict=True))

    @property
    def key_pattern(self) -> str:
        """A SCAN pattern matching every key of the season."""
        return f"{self._tag.replace('{', '[{]').replace('}', '[}]')}:*"

    def players_key(self, user_id: str) -> str:
        """The hash that says where the player's member is."""
        return f"{self._tag}:players:{zlib.crc32(user_id.encode()) % PLAYER_HASHES}"

    def set_totals(self, totals: Iterable[PlayerTotal], live: bool = True) -> Written:
        """Write players' points, each applied only if it moves the player up (see the module's docstring); one round
        trip. If any was applied, the season's version rises and, if `live` (the season is the one on show) and no
        publisher holds the lease, this write takes it."""
        lease = uuid.uuid4().hex
        args: list[str | bytes | int] = [lease, LEASE_MS, int(self._clock() * 1_000_000), int(live)]
        players: list[str] = []
        for player in totals:
            moment = (_LATEST - player.reached_at_ms).to_bytes(_MOMENT_BYTES, "big")
            args += [player.user_id, player.total, moment, player.display_name]
            players.append(self.players_key(player.user_id))
        if not players:
            return Written(applied=0, lease=None)
        applied, woke = cast(list[int], self._call("set_totals", args, players))
        return Written(applied=int(applied), lease=lease if woke else None)

    def remove(self, user_id: str, removed_at_ms: int, live: bool = True) -> Written:
        """Take the player off the season's ranking (a moderator's removal, a ban). Points they reached up to
        `removed_at_ms`, still in flight to this board, are refused from then on; points reached later count."""
        lease = uuid.uuid4().hex
        moment = (_LATEST - removed_at_ms).to_bytes(_MOMENT_BYTES, "big")
        args = [lease, LEASE_MS, int(self._clock() * 1_000_000), int(live), user_id, moment]
        removed, woke = cast(list[int], self._call("remove", args, [self.players_key(user_id)]))
        return Written(applied=int(removed), lease=lease if woke else None)

    def lift(self, user_id: str) -> None:
        """Take down the fence a removal left (an unbanned player's points are written again)."""
        self._call("lift", [user_id], [self.players_key(user_id)])

    def page(self, offset: int = 0, limit: int = TOP) -> list[Standing]:
        """Up to `limit` players from rank `offset + 1` on, in rank order."""
        try:
            entries = self._client.zrevrange(self.keys["ranking"], offset, offset + limit - 1, withscores=True)
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc
        return _standings(cast(list[tuple[bytes, float]], entries), first_rank=offset + 1)

    def size(self) -> int:
        """How many players the season's ranking holds."""
        try:
            return int(self._client.zcard(self.keys["ranking"]))
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc

    def top(self, count: int = TOP) -> list[Standing]:
        """The first `count` players, rank 1 first."""
        return self.page(0, count)

    def standing(self, user_id: str, around: int = AROUND) -> tuple[Standing, list[Standing]] | None:
        """The player's standing and up to `around` players above and below (the player included)."""
        found = self._call("standing", [user_id, around], [self.players_key(user_id)])
        if not found:
            return None
        rank, first, entries = cast(list[Any], found)
        neighbours = _standings(_pairs(entries), first_rank=int(first) + 1)
        return next(s for s in neighbours if s.rank == int(rank) + 1), neighbours

    def snapshot(self) -> Snapshot:
        """The season's versions and top 10, read together, and the board's audience."""
        seq, top_seq, published, entries = cast(list[Any], self._call("snapshot", []))
        return Snapshot(
            seq=int(seq),
            top_seq=int(top_seq),
            published_top_seq=int(published),
            top=_standings(_pairs(entries), first_rank=1),
            viewers=self.viewers(),
        )

    def viewers(self) -> float:
        """Subscriptions to the board's channel over the last AUDIENCE_WINDOW_MS, whatever the season: the count of
        the window before weighed by how much of it the last window still covers."""
        now_ms = self._now_ms()
        try:
            now_count, before_count = self._client.mget(self.audience_keys(now_ms))
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc
        covered = 1 - (now_ms % AUDIENCE_WINDOW_MS) / AUDIENCE_WINDOW_MS
        return int(now_count or 0) + int(before_count or 0) * covered

    def count_viewer(self) -> None:
        """One more subscription to the board's channel: its audience (clients renew every AUDIENCE_WINDOW_MS)."""
        key = self.audience_keys()[0]
        try:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.incr(key)
            pipeline.pexpire(key, 2 * AUDIENCE_WINDOW_MS)
            pipeline.execute()
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc

    def watch(self, user_id: str) -> str | None:
        """The player subscribed to their own channel: they watch their standing for WATCH_MS, and are owed it at
        once. The publishing lease if this call took it (then the caller wakes a publisher)."""
        lease = uuid.uuid4().hex
        args: list[str | bytes | int] = [user_id, self._now_ms() + WATCH_MS, lease, LEASE_MS]
        woke = self._call("watch", args, [self.players_key(user_id)])
        return lease if int(woke) else None

    def rank_changes(self, lease: str, limit: int, start: int = 0, hold_ms: int = 0) -> RankChanges:
        """The board's version, and up to `limit` watchers whose standing differs from the one last published to them
        (or who are owed it), going round the watchers from `start`; once the cycle is finished, these are the
        standings remembered as published. The lease is renewed for `hold_ms` more than usual (the cycle's length).
        Raises LeaseLost if another publisher holds the lease."""
        found = self._call("rank_changes", [lease, LEASE_MS + hold_ms, self._now_ms(), start, limit])
        if not found:
            raise LeaseLost
        seq, more, next_start, *fields = cast(list[bytes], found)
        changes = []
        for index in range(0, len(fields), 5):
            user_id, rank, score, previous, name = (value.decode() for value in fields[index : index + 5])
            standing = Standing(user_id=user_id, user_name=name, rank=int(rank), score=int(float(score)))
            changes.append(RankChange(standing, previous_rank=int(previous.split("|")[0]) if previous else None))
        return RankChanges(int(seq), changes, more=bool(int(more)), next_start=int(next_start))

    def finish_cycle(self, lease: str, snapshot: Snapshot, more: bool, hold_ms: int = 0) -> bool:
        """Record that `snapshot` (and the standings of the last `rank_changes`) went out. True if changes wait (this
        publisher goes on, its lease renewed for `hold_ms` more than usual: its wait before the next cycle); False if
        the board is up to date (the lease is released) or another publisher took over."""
        args: list[str | int] = [lease, snapshot.seq, snapshot.top_seq, LEASE_MS + hold_ms, int(more)]
        return int(self._call("finish_cycle", args)) == 1

    def adopt(self, lease: str) -> str:
        """Swap a wake-up's lease for a token of this publisher's own, so a duplicated wake-up (SQS delivers at least
        once) finds the lease taken; raises LeaseLost if another publisher holds it."""
        own = uuid.uuid4().hex
        self._hold_lease(lease, own)
        return own

    def renew(self, lease: str) -> None:
        """Keep the lease through a long cycle; raises LeaseLost if another publisher took it."""
        self._hold_lease(lease, lease)

    def _hold_lease(self, lease: str, token: str) -> None:
        if not int(self._call("hold", [lease, LEASE_MS, token])):
            raise LeaseLost

    def abandon(self, lease: str) -> None:
        """Give the publishing lease up (it could not be acted on); the next change takes it again."""
        self._call("abandon", [lease])

    def claim(self) -> str | None:
        """The lease, if something waits to be published and no publisher holds it."""
        lease = uuid.uuid4().hex
        return lease if int(self._call("claim", [lease, LEASE_MS])) else None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def audience_keys(self, now_ms: int | None = None) -> tuple[str, str]:
        """The board's audience counters of the current window and of the one before (names move with the clock)."""
        window = (now_ms if now_ms is not None else self._now_ms()) // AUDIENCE_WINDOW_MS
        return f"{self._audience_tag}:viewers:{window}", f"{self._audience_tag}:viewers:{window - 1}"

    def _call(self, script: str, args: Sequence[str | bytes | int], players: Sequence[str] = ()) -> Any:
        return self._scripts[script]([*self._keys, *players], [self._expires_at_ms, *args])


def _pairs(entries: list[bytes]) -> list[tuple[bytes, float]]:
    """A script's ZREVRANGE ... WITHSCORES answer, as redis-py gives it for a direct call."""
    return [(entries[index], float(entries[index + 1])) for index in range(0, len(entries), 2)]


def _standings(entries: list[tuple[bytes, float]], first_rank: int) -> list[Standing]:
    standings = []
    for offset, (member, points) in enumerate(entries):
        user_id, _, name = member[_MOMENT_BYTES:].partition(b":")
        standings.append(Standing(user_id.decode(), name.decode(), rank=first_rank + offset, score=int(points)))
    return standings


def open_board(definition: BoardDefinition, season: Season) -> Board:
    """The season of the board on the configured Redis (`redis_client`), its keys expiring when the season stops being
    readable."""
    return _open_board(definition, season, redis_client(), settings.redis_key_prefix)


@cache
def _open_board(definition: BoardDefinition, season: Season, client: RedisClient, prefix: str) -> Board:
    return Board(definition.id, season.name, client, expires_at_ms=definition.expires_at_ms(season))


def count_in_window(limit: str, subject: str, window: int, expires_at_ms: int) -> int:
    """Count one more request of `subject` (a client's network) against rate limit `limit` in its fixed window number
    `window`, and return the window's count so far; the counter expires at `expires_at_ms`. One round trip (INCR and
    PEXPIREAT, pipelined)."""
    key = f"{settings.redis_key_prefix}:{{rate:{limit}:{subject}}}:{window}"
    pipeline = redis_client().pipeline(transaction=False)
    pipeline.incr(key)
    pipeline.pexpireat(key, expires_at_ms)  # absolute: setting it again at every count moves nothing
    try:
        count, _ = pipeline.execute()
    except _REDIS_ERRORS as exc:
        raise BoardUnavailable from exc
    return int(count)


class Restoration:
    """Whether the boards hold what the ledger held when a rebuild last restored them all (a Redis that came back
    empty, or a new one, says no), and the lock that keeps two automatic rebuilds from running at once."""

    def __init__(self, client: RedisClient) -> None:
        tag = f"{settings.redis_key_prefix}:{{restore}}"
        self.keys = {name: f"{tag}:{name}" for name in _RESTORE_KEY_NAMES}
        self._client = client
        self._end = _Script(client, END_REBUILD_SCRIPT)

    def needed(self) -> bool:
        """No rebuild restored the boards since Redis last started empty."""
        try:
            return not self._client.exists(self.keys["restored"])
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc

    def begin(self, hold_ms: int) -> str | None:
        """The lock for a rebuild about to start, held for `hold_ms` (as long as the rebuild can run, so that one
        which dies frees it when it would have ended); None if another rebuild holds it."""
        token = uuid.uuid4().hex
        try:
            taken = self._client.set(self.keys["rebuilding"], token, nx=True, px=hold_ms)
        except _REDIS_ERRORS as exc:
            raise BoardUnavailable from exc
        return token if taken else None

    def end(self, token: str, restored_at_ms: int | None) -> bool:
        """Release the rebuild's lock and, if it completed (at `restored_at_ms`), mark the boards restored. False if
        the lock was gone: Redis lost it during the rebuild (it restarted empty again, and took what the rebuild had
        written before with it), so nothing is marked and the next run rebuilds again."""
        done = "" if restored_at_ms is None else str(restored_at_ms)
        return bool(int(self._end(list(self.keys.values()), [token, done])))


def restoration() -> Restoration:
    """The boards' restoration on the configured Redis."""
    return Restoration(redis_client())
