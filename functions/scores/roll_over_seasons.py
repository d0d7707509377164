"""RollOverSeasons (scheduled): archives the top 100 of the seasons that ended (archive.py). Their Redis keys expire
on their own once their readable days are over; a new season needs nothing: it starts empty at the reset."""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import archive

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    archived = archive.archive_ended_seasons(int(time.time() * 1000))
    logger.info("seasons archived", extra={"seasons": archived})
    return {"archived": archived}
