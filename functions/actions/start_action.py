"""POST /v1/actions: start an action (a match...) that a score can later be posted for."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import actions, http
from leaderboard.bodies import StartActionBody
from leaderboard.game import game
from leaderboard.problems import UnprocessableContent

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    caller = http.caller(event)
    body = http.parse_body(event, StartActionBody) if event.get("body") else StartActionBody()
    try:
        action = actions.start_action(caller.user_id, body.type)
    except actions.UnknownActionType:
        known = ", ".join(sorted(game().action_types))
        raise UnprocessableContent(f"Unknown action type; the types are: {known}.") from None
    logger.debug("action started", extra={"user_id": caller.user_id, "action_id": action.action_id})
    return http.json_response(201, action.body())
