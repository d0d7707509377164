"""The authentication service: accounts, login sessions and the tokens that prove them.

Each function here is one route's domain logic; it raises `Problem`s the caller can act on.
"""

from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools import Logger

from leaderboard import login_throttle, passwords, rate_limits, signing_keys, token_families, tokens, users
from leaderboard.config import settings
from leaderboard.identity import Identity
from leaderboard.problems import Conflict, Forbidden, TooManyRequests, Unauthorized
from leaderboard.security_events import SecurityEvent, record
from leaderboard.tokens import ACCESS_TOKEN_SECONDS, LEEWAY_SECONDS, issue_access_token

logger = Logger(child=True)

# How long an access token issued before a logout or a password change may still be honoured: its lifetime, the
# verifier's leeway, and API Gateway's cache of the authorizer's answer (template.yaml, ReauthorizeEvery: 240).
AUTHORIZER_CACHE_SECONDS = 240
ACCESS_TOKEN_WINDOW = ACCESS_TOKEN_SECONDS + LEEWAY_SECONDS + AUTHORIZER_CACHE_SECONDS

_LOGIN_FAILED = "The username or password is incorrect."


@dataclass(frozen=True)
class Session:
    """What a successful login or refresh hands to the player."""

    user_id: str
    access_token: str
    refresh_token: str
    device_token: str | None = None  # a login's only: this client logged in to the account (see login_throttle)

    def body(self) -> dict[str, Any]:
        body = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "user_id": self.user_id,
        }
        if self.device_token is not None:
            body["device_token"] = self.device_token
        return body


def register(username: str, password: str, display_name: str | None) -> users.User:
    """A new account, shown on the boards as `display_name` (already normalized: bodies.DisplayName) or, without
    one, as a generated name; never as its username. 409 if the username is taken, or if another player holds a
    display name that looks the same."""
    try:
        return users.create_user(username, display_name, passwords.hash_password(password))
    except users.UsernameTaken:
        raise Conflict("This username is taken; choose another.") from None
    except users.DisplayNameTaken:
        raise Conflict(
            "This display name is taken: another player's name looks the same. Choose another display name."
        ) from None


def login(username: str, password: str, address: str, device_token: str | None = None) -> Session:
    """A new session for the right password, with a new device token. An unknown user and a wrong password get the
    same answer after the same work; too many failures get 429 with Retry-After. A client that presents a device
    token of this account (from an earlier login) is spared the account-wide limit (login_throttle.py)."""
    account = users.username_key(username)
    reservation = _reserve_attempt(account, address, _proven_device(device_token, account))
    user = users.find_user(username)
    # Verified even for an unknown user (against a decoy hash): the same work, the same answer.
    valid = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not valid:
        record(SecurityEvent.FAILED_LOGIN, user=account, address=address)
        raise Unauthorized(_LOGIN_FAILED)  # the reserved attempt stays counted
    rate_limits.give_back(reservation)
    if passwords.needs_rehash(user.password_hash):
        users.replace_password_hash(username, passwords.hash_password(password))
    owner = Identity(user_id=user.user_id, username=user.username, display_name=user.display_name)
    device = tokens.issue_device_token(
        user.user_id, account, signing_keys.keys.current(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return replace(_session(owner, token_families.start_family(owner)), device_token=device)


def refresh(refresh_token: str, address: str) -> Session:
    """Spend a refresh token for a new pair; a spent token revokes its whole family."""
    try:
        owner, next_token = token_families.rotate(refresh_token)
    except token_families.ReuseDetected as reuse:
        record(SecurityEvent.REFRESH_TOKEN_REUSE, user=reuse.user_id, address=address)
        raise Unauthorized("The refresh token is not valid; log in again.") from None
    except token_families.RefreshRefused:
        raise Unauthorized("The refresh token is not valid; log in again.") from None
    return _session(owner, next_token)


def change_password(caller: Identity, current_password: str, new_password: str, address: str) -> None:
    """Replace the caller's password, given the current one (throttled like logins: this too guesses a password),
    and end every session: each refresh token stops working; access tokens run out within ACCESS_TOKEN_WINDOW."""
    reservation = _reserve_attempt(users.username_key(caller.username), address)
    user = users.find_user(caller.username)
    if user is None or user.user_id != caller.user_id:
        raise Forbidden("This account no longer exists.")
    if not passwords.verify_password(user.password_hash, current_password):
        record(SecurityEvent.FAILED_LOGIN, user=user.user_id, address=address)
        raise Forbidden("The current password is incorrect.")  # the reserved attempt stays counted
    rate_limits.give_back(reservation)
    users.replace_password_hash(user.username, passwords.hash_password(new_password))
    token_families.end_all(user.user_id)


def logout_everywhere(user_id: str) -> None:
    """End every session of the player (see change_password for what still works, and how long)."""
    token_families.end_all(user_id)


def _reserve_attempt(account: str, address: str, device_id: str | None = None) -> rate_limits.Taken:
    try:
        return login_throttle.reserve(account, address, device_id)
    except rate_limits.LimitReached as reached:
        record(SecurityEvent.LOGIN_THROTTLED, user=account, address=address, limit=", ".join(reached.limits))
        raise TooManyRequests("Too many failed logins; try again later.", retry_after=reached.retry_after) from None


def _proven_device(device_token: str | None, account: str) -> str | None:
    """The id of the device that `device_token` proves logged in to `account` before; None without such a token. A
    token that is not valid, or is another account's, counts as none: the login goes on as from a new client."""
    if device_token is None:
        return None
    try:
        device = tokens.verify_device_token(
            device_token, signing_keys.keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
    except tokens.InvalidToken as refused:
        logger.info("device token not accepted", extra={"reason": refused.reason})
        return None
    if device.account != account:
        logger.info("device token not accepted", extra={"reason": "another account"})
        return None
    return device.device_id


def logout(refresh_token: str, user_id: str) -> None:
    """Revoke the session (token family) of `refresh_token`, which must be the caller's."""
    try:
        token_families.revoke(refresh_token, user_id)
    except token_families.RefreshRefused:
        raise Unauthorized("The refresh token is not valid.") from None
    except token_families.NotYourToken:
        raise Forbidden("This refresh token belongs to another player.") from None


def _session(owner: Identity, refresh_token: str) -> Session:
    access_token = issue_access_token(
        owner, signing_keys.keys.current(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return Session(user_id=owner.user_id, access_token=access_token, refresh_token=refresh_token)
