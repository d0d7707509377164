"""Request bodies of the API, validated strictly: exact JSON types, no missing or extra fields.

Each field's description is what a caller is told when the field is wrong.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


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
# Never in a display name: control characters (C0, C1), zero-width characters and bidirectional overrides,
# which would let one player's name pass for another's on the board.
_UNSHOWABLE = r"\x00-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2066}-\x{2069}\x{feff}"
DisplayName = Annotated[
    str,
    Field(
        max_length=32,
        pattern=rf"^[^{_UNSHOWABLE}]*[^\s{_UNSHOWABLE}][^{_UNSHOWABLE}]*$",
        description="a string of 1 to 32 printable characters, not only spaces",
    ),
]
# Login accepts any plausible string so that a malformed username fails exactly like an unknown one.
LoginName = Annotated[str, Field(min_length=1, max_length=64, description="a string of 1 to 64 characters")]
LoginPassword = Annotated[
    str, Field(min_length=1, max_length=PASSWORD_MAX, description=f"a string of 1 to {PASSWORD_MAX} characters")
]
RefreshToken = Annotated[str, Field(min_length=1, max_length=2048, description="a refresh token string")]


class RegisterBody(_Body):
    username: Username
    password: NewPassword
    display_name: DisplayName | None = None


class LoginBody(_Body):
    username: LoginName
    password: LoginPassword


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
