"""What ElastiCache Serverless asks of a Lua script, read off the scripts' text: no TIME (reported refused inside
scripts), and every key a command touches is one the script was given, named (so the caller declared it, and the
cluster run of the integration tests proves the declared keys share a slot)."""

import re

import pytest

from leaderboard import board

SCRIPTS = {**board.BOARD_SCRIPTS, "end_rebuild": board.END_REBUILD_SCRIPT}
# The names scripts give their KEYS (board._HEADER, END_REBUILD_SCRIPT), a players' hash a call was given
# (`players_hash(n)`, or a local bound to one), and the key parameter of the helpers that take one.
GIVEN_KEYS = {*board._KEY_NAMES, *board._RESTORE_KEY_NAMES, "players", "key"}
REDIS_CALL = re.compile(r"redis\.call\(")
KEY_OF_A_CALL = re.compile(r"redis\.call\(\s*[^,()]+,\s*([^,()]+(?:\(\d+\))?)")  # redis.call(<command>, <key>, ...)
# The helpers that pass a key on: in_slices(<command>, <key>, ...), expire(<key>), set(<key>, ...).
KEY_OF_A_HELPER = re.compile(r"in_slices\(\s*[^,()]+,\s*(\w+)|\b(?:expire|set)\(\s*(\w+)")


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_asks_redis_for_the_time(name: str) -> None:
    assert not re.search(r"""['"]TIME['"]""", SCRIPTS[name], re.IGNORECASE)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_command_of_a_script_touches_a_key_it_was_given_by_name(name: str) -> None:
    script = SCRIPTS[name]
    calls = KEY_OF_A_CALL.findall(script)
    helpers = [first or second for first, second in KEY_OF_A_HELPER.findall(script)]

    assert len(calls) == len(REDIS_CALL.findall(script))  # every command names a key
    unknown = [key for key in calls + helpers if key not in GIVEN_KEYS]
    assert [key for key in unknown if not re.fullmatch(r"players_hash\(\d+\)", key)] == []
    # KEYS itself is read only where the keys are named.
    assert script.count("KEYS") == (board._HEADER.count("KEYS") if name in board.BOARD_SCRIPTS else 1)
