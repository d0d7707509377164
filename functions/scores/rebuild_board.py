"""RebuildBoard: restore the boards in Redis from the ledger in DynamoDB, e.g. after Redis came back empty.

The event names what to rebuild: `{}` every readable season of every board; `{"board": "weekly"}` that board's
readable seasons; `{"board": "weekly", "season": "2026-W49"}` that season. Safe while scores keep arriving: a board
keeps a write only if it moves the player up, and the ledger only ever moves players up.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import scores
from leaderboard.game import game

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    board_id, season = event.get("board"), event.get("season")
    if board_id is not None and board_id not in game().boards:
        raise ValueError(f"no board {board_id!r}; the boards are {sorted(game().boards)}")
    if season is not None and game().season(str(board_id), season) is None:
        raise ValueError(f"no season {season!r} of board {board_id!r}; seasons are named like 2026-W49")
    written = scores.rebuild(now_ms, wanted=lambda key: board_id in (None, key[0]) and season in (None, key[1]))
    players = {f"{key[0]}/{key[1]}": count for key, count in written.items()}
    logger.info("boards rebuilt", extra={"seasons": players})
    return {"players": players}
