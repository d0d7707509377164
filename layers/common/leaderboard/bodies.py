"""Request bodies of the API, validated strictly: exact JSON types, no missing or extra fields.

Each field's description is what a caller is told when the field is wrong.
"""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from leaderboard import names


class _Body(BaseModel):
    # Patterns run on pydantic's Rust regex engine, where `$` is the very end (Python's `$` also admits a final "\n").
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# OWASP: at least 8 characters, a generous upper bound, never truncated (argon2 hashes every byte it is given).
PASSWORD_MIN, PASSWORD_MAX = 8, 128

Username = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_.-]{3,32}$", description="a string of 3 to 32 letters, digits, '_', '.' or '-'"),
]
NewPassword = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description=f"a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters",
    ),
]
# A validation error of this type carries a message of our own for the caller (http.parse_body passes it on).
RULE_BROKEN = "rule_broken"


def _display_name(text: str) -> str:
    """The name as stored and shown (names.normalize: the one place for the rules), or the rule it breaks."""
    try:
        return names.normalize(text)
    except names.InvalidName as broken:
        raise PydanticCustomError(RULE_BROKEN, "{rule}", {"rule": str(broken)}) from None


# Optional: without one (or with null) the server chooses a name. The description sits outside the union, where
# pydantic keeps it for the field.
DisplayName = Annotated[
    Annotated[str, AfterValidator(_display_name)] | None,
    Field(description=f"a string of 1 to {names.MAX_LENGTH} letters, marks, numbers, punctuation marks and spaces"),
]
# Login accepts any plausible string so that a malformed username fails exactly like an unknown one.
LoginName = Annotated[str, Field(min_length=1, max_length=64, description="a string of 1 to 64 characters")]
LoginPassword = Annotated[
    str, Field(min_length=1, max_length=PASSWORD_MAX, description=f"a string of 1 to {PASSWORD_MAX} characters")
]
RefreshToken = Annotated[str, Field(min_length=1, max_length=2048, description="a refresh token string")]
DeviceToken = Annotated[str, Field(min_length=1, max_length=2048, description="a device token string")]


class RegisterBody(_Body):
    username: Username
    password: NewPassword
    display_name: DisplayName = None


class LoginBody(_Body):
    username: LoginName
    password: LoginPassword
    # Optional: the device token an earlier login of the account answered (login_throttle.py says what it spares).
    device_token: DeviceToken | None = Field(default=None, description="a device token string")


class RefreshBody(_Body):
    refresh_token: RefreshToken


class LogoutBody(_Body):
    refresh_token: RefreshToken


class ChangePasswordBody(_Body):
    current_password: LoginPassword
    new_password: NewPassword


# Integers past 2^53 are not exact in JSON clients (JavaScript) nor in Redis: they are a type error, not a range one.
MAX_EXACT_INTEGER = 2**53
_Id = Annotated[str, Field(min_length=1, max_length=64, description="an id string")]


class StartActionBody(_Body):
    type: Annotated[str, Field(min_length=1, max_length=32, description="an action type name")] = "match"


class PostScoreBody(_Body):
    user_id: _Id
    score: Annotated[
        int, Field(ge=-MAX_EXACT_INTEGER, le=MAX_EXACT_INTEGER, description="a whole number (no fraction, no quotes)")
    ]
    action_id: _Id


# An id of the studio's own (a match, a round): with the player, it names one score, exactly once.
_ServerActionId = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="a string of 1 to 64 letters, digits, '.', '_', ':' or '-'"),
]


class ServerScoreBody(_Body):
    user_id: _Id
    action_id: _ServerActionId
    score: Annotated[
        int, Field(ge=-MAX_EXACT_INTEGER, le=MAX_EXACT_INTEGER, description="a whole number (no fraction, no quotes)")
    ]
    type: Annotated[str, Field(min_length=1, max_length=32, description="an action type name")] = "match"


# Why an operator acted: kept in the audit trail.
_Reason = Annotated[str, Field(min_length=1, max_length=500, description="a string of 1 to 500 characters")]
_BoardId = Annotated[str, Field(min_length=1, max_length=32, description="a board id")]
_SeasonName = Annotated[str, Field(min_length=1, max_length=16, description="a season name, e.g. 2026-W49 or all")]


class RemovePointsBody(_Body):
    user_id: _Id
    board: _BoardId
    season: _SeasonName
    reason: _Reason


class BanBody(_Body):
    user_id: _Id
    reason: _Reason
