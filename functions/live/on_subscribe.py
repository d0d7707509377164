"""The Event API's onSubscribe handler (both namespaces), after the authorizer let the caller in.

- `/boards/<board>`: anyone, for a board this stack keeps; each subscription counts towards the board's audience,
  which sets its publish rate (the budget, leaderboard/live.py).
- `/players/<user_id>` (their standing on the `global` board) and `/players/<user_id>/<board>` (on another board):
  that player only, named by the token the subscription was authorized with; they become a watcher of the board's
  current season, sent their standing at once and whenever it moves.
Wildcards and deeper paths are refused: a `/players/*` subscription would receive every player's messages.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import AppSyncEventsResolver
from aws_lambda_powertools.event_handler.events_appsync.exceptions import UnauthorizedException
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import live
from leaderboard.board import Board, BoardUnavailable, open_board
from leaderboard.game import ALL_TIME_BOARD, game

logger = Logger()
app = AppSyncEventsResolver()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped


class UnknownChannel(Exception):
    """No board of this stack is published there."""


@app.on_subscribe("/boards/*")
def watch_board() -> None:
    segments = app.current_event.info.channel_segments
    the_board = _current(segments[1]) if len(segments) == 2 else None
    if the_board is None:
        raise UnknownChannel("no such board")
    try:
        the_board.count_viewer()
    except BoardUnavailable:  # watching must not fail because counting did; the budget errs for one viewer
        logger.warning("could not count a viewer")


@app.on_subscribe("/players/*")
def watch_own_standing() -> None:
    segments = app.current_event.info.channel_segments
    caller = (app.current_event.get("identity") or {}).get("handlerContext") or {}
    if len(segments) not in (2, 3) or not caller.get("user_id") or segments[1] != caller["user_id"]:
        raise UnauthorizedException("only a player may subscribe to their own channel")
    board_id = segments[2] if len(segments) == 3 else ALL_TIME_BOARD
    the_board = _current(board_id) if board_id != ALL_TIME_BOARD or len(segments) == 2 else None
    if the_board is None:
        raise UnknownChannel("no such board")
    try:
        live.wake_publisher(the_board, the_board.watch(segments[1]))
    except BoardUnavailable:  # their standing comes with its next change, once the board is back
        logger.warning("could not register a watcher")


def _current(board_id: str) -> Board | None:
    """The current season of the board, if this stack keeps one of that name."""
    definition = game().boards.get(board_id)
    return open_board(definition, definition.season_at(int(time.time() * 1000))) if definition else None


@app.on_subscribe("/*")
def refuse_other_channels() -> None:
    # A path no handler above takes (a namespace's root, say): nothing is ever published there.
    raise UnknownChannel("nothing is published on this channel")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return app.resolve(event, context)
