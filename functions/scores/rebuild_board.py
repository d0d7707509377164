"""RebuildBoard: restore the boards in Redis from the ledger in DynamoDB, e.g. after Redis came back empty.

The event names what to rebuild: `{}` every readable season of every board; `{"board": "weekly"}` that board's
readable seasons; `{"board": "weekly", "season": "2026-W49"}` that season. Safe while scores keep arriving: a board
keeps a write only if it moves the player up, and the ledger only ever moves players up.

`{"if_lost": true}` (the template's schedule, every minute) rebuilds every board only if Redis lost them: when no
rebuild has restored them since Redis last started empty (`board.Restoration`), and no other rebuild is under way.
It marks them restored once it completes; one that fails or is cut short leaves no mark, and the next minute tries
again.
"""

import time
from contextlib import suppress
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import board, board_sync
from leaderboard.game import game

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    if event.get("if_lost"):
        return _restore_if_lost(now_ms, context)
    board_id, season = event.get("board"), event.get("season")
    if board_id is not None and board_id not in game().boards:
        raise ValueError(f"no board {board_id!r}; the boards are {sorted(game().boards)}")
    if season is not None and game().season(str(board_id), season) is None:
        raise ValueError(f"no season {season!r} of board {board_id!r}; seasons are named like 2026-W49")
    written = board_sync.rebuild(now_ms, wanted=lambda key: board_id in (None, key[0]) and season in (None, key[1]))
    return _rebuilt(written)


def _restore_if_lost(now_ms: int, context: LambdaContext) -> dict[str, Any]:
    restoration = board.restoration()
    if not restoration.needed():
        return {"players": {}}
    # The lock lasts as long as this invocation may run: a rebuild cut short by the timeout frees it as it ends.
    token = restoration.begin(hold_ms=context.get_remaining_time_in_millis())
    if token is None:
        logger.info("the boards are being restored by another rebuild")
        return {"players": {}}
    logger.warning("the boards are not marked restored (Redis came back empty, or is new): rebuilding them all")
    try:
        written = board_sync.rebuild(now_ms)
    except BaseException:
        with suppress(board.BoardUnavailable):  # then the lock expires on its own
            restoration.end(token, restored_at_ms=None)
        raise
    if not restoration.end(token, restored_at_ms=now_ms):
        logger.warning("Redis lost the rebuild's lock while it ran (restarted empty again?): the next run rebuilds")
    return _rebuilt(written)


def _rebuilt(written: dict[tuple[str, str], int]) -> dict[str, Any]:
    players = {f"{key[0]}/{key[1]}": count for key, count in written.items()}
    logger.info("boards rebuilt", extra={"seasons": players})
    return {"players": players}
