"""Request bodies of the API, validated strictly: exact JSON types, no missing or extra fields.

Each field's description is what a caller is told when the field is wrong.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # python-re: the display name pattern needs a look-ahead, which pydantic's default engine lacks.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, regex_engine="python-re")


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
DisplayName = Annotated[
    str,
    Field(
        pattern=r"^(?=.*\S)[^\x00-\x1f\x7f]{1,32}$",
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
