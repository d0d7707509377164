"""Who a request acts for."""

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """A player as an access token (and so the authorizer's context) describes them."""

    user_id: str
    username: str
    display_name: str

    def as_context(self) -> dict[str, str]:
        """The authorizer context API Gateway hands to the routes."""
        return asdict(self)

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> "Identity":
        """Back from the authorizer context."""
        return cls(user_id=context["user_id"], username=context["username"], display_name=context["display_name"])
