"""JWT attacks on the HTTP API and on the live feed's connect and subscribe (RFC 8725's list and then some), against
the local runtime or a deployed stack.

Every forged token names a victim (their `sub`, username and display name), and is tried where it would hurt them:
posting a score for the victim's open action and logging the victim out (API Gateway's 403 each, and afterwards the
victim is still unscored and their session still refreshes), connecting to the live feed, and subscribing to the
victim's own channel and to a board on an anonymous connection (refused, nothing subscribed).

Two kinds of forgery: those anyone can make (no key, another algorithm, an attacker's own key, a real token tampered
with, cut or padded, another kind of token) run everywhere; those signed with the stack's own key but for ONE defect
(a missing claim, a wrong audience, an unknown `crit`...) prove each check by itself, and need the key: only the
local runtime's can be read, so they skip against a deployed stack. A control proves that the same forger, without a
defect, makes a token the stack accepts.
"""

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

from clients.event_api import EventSocket
from local.services import Endpoints
from tests.e2e.conftest import LiveFeed
from tests.e2e.hostile import (
    ANONYMOUS,
    Account,
    StackKey,
    access_claims,
    access_header,
    assert_gateway,
    assert_live_refusal,
    assert_problem,
    b64json,
    b64url,
    bearer,
    refused_connect,
    refused_subscribe,
    signed,
    stack_signing_key,
    token_parts,
    unsigned,
)

pytestmark = pytest.mark.e2e


@dataclass
class Forge:
    """What the forgeries are made from: the attacker's own real tokens, the victim they name (with an open action
    and a live session), and the stack's key where it can be read."""

    attacker: Account
    victim: Account
    victim_action: str
    key: StackKey | None

    def victim_claims(self, **changes: Any) -> dict[str, Any]:
        return access_claims(self.attacker.access_token, self.victim, **changes)

    def real_header(self, **changes: Any) -> dict[str, Any]:
        header, _ = token_parts(self.attacker.access_token)
        return {name: value for name, value in (header | changes).items() if value is not None}

    def with_key(self) -> StackKey:
        assert self.key is not None
        return self.key


@pytest.fixture(scope="module")
def forge(api_url: str, local_stack: Endpoints | None) -> Forge:
    attacker, victim = Account(api_url), Account(api_url)
    key = stack_signing_key(local_stack) if local_stack is not None else None
    return Forge(attacker, victim, victim.open_action()["action_id"], key)


# --- The forgeries ----------------------------------------------------------------------------------------------------

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_PUBLIC_PEM = _RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
_EC = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()
_ATTACKER_JWK = RSAAlgorithm.to_jwk(_RSA.public_key(), as_dict=True)
_ATTACKER_URL = "https://attacker.example/.well-known/jwks.json"


def _attacker_signed(forge: Forge, algorithm: str, private_key: Any, **header: Any) -> str:
    return signed(forge.real_header(alg=algorithm, **header), forge.victim_claims(), private_key, algorithm)


def _hmac_keyed(key: bytes, **header: Any) -> Callable[[Forge], str]:
    return lambda forge: signed(forge.real_header(**header), forge.victim_claims(), key)


def _kept_signature(
    header: Callable[[dict[str, Any]], Any], claims: Callable[[dict[str, Any]], Any]
) -> Callable[[Forge], str]:
    """The attacker's real token with its header and claims rewritten and its signature kept."""

    def build(forge: Forge) -> str:
        real_header, real_claims = token_parts(forge.attacker.access_token)
        return unsigned(header(real_header), claims(real_claims), forge.attacker.access_token.rsplit(".", 1)[1])

    return build


def _respelled(spell: Callable[[str], str]) -> Callable[[Forge], str]:
    """The victim's own real token, cut, padded or spelled another way."""
    return lambda forge: spell(forge.victim.access_token)


def _alg_none(spelling: str) -> Callable[[Forge], str]:
    return lambda forge: unsigned(forge.real_header(alg=spelling), forge.victim_claims())


def _changed_tail(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


# Forgeries anyone can make: no key of the stack's is needed.
KEYLESS: dict[str, Callable[[Forge], str]] = {
    **{f"alg {spelling}, no signature": _alg_none(spelling) for spelling in ("none", "None", "NONE", "nOnE")},
    "alg none, a real signature kept": _kept_signature(lambda header: header | {"alg": "none"}, lambda claims: claims),
    "alg RS256, an attacker's RSA key": lambda forge: _attacker_signed(forge, "RS256", _RSA),
    "alg PS256, an attacker's RSA key": lambda forge: _attacker_signed(forge, "PS256", _RSA),
    "alg ES256, an attacker's EC key": lambda forge: _attacker_signed(forge, "ES256", _EC),
    "alg EdDSA, an attacker's Ed25519 key": lambda forge: _attacker_signed(forge, "EdDSA", _ED),
    "HS256 keyed with an RSA public key (key confusion)": _hmac_keyed(_RSA_PUBLIC_PEM),
    "RS256 with the attacker's key in a jwk header": lambda forge: _attacker_signed(
        forge, "RS256", _RSA, jwk=_ATTACKER_JWK
    ),
    "jku header naming the attacker's keys": lambda forge: _attacker_signed(forge, "RS256", _RSA, jku=_ATTACKER_URL),
    "x5u header naming the attacker's certificate": lambda forge: _attacker_signed(
        forge, "RS256", _RSA, x5u=_ATTACKER_URL
    ),
    "x5c header carrying a certificate": lambda forge: _attacker_signed(
        forge, "RS256", _RSA, x5c=[b64url(_RSA_PUBLIC_PEM)]
    ),
    "kid a path to /dev/null, HMAC with an empty key": _hmac_keyed(b"", kid="../../../../../../dev/null"),
    "kid an SQL injection": _hmac_keyed(b"secret", kid="x' UNION SELECT 'secret' --"),
    "kid a query-string injection": _hmac_keyed(b"", kid="x&versionStage=AWSCURRENT"),
    "kid a version stage's name": _hmac_keyed(b"", kid="AWSCURRENT"),
    "kid a URL": _hmac_keyed(b"", kid=_ATTACKER_URL),
    "kid of 1000 characters": _hmac_keyed(b"", kid="k" * 1000),
    "kid null": lambda forge: signed(forge.real_header() | {"kid": None}, forge.victim_claims(), b""),
    "kid a number": lambda forge: signed(forge.real_header() | {"kid": 1}, forge.victim_claims(), b""),
    "kid an object": lambda forge: signed(forge.real_header() | {"kid": {"id": 1}}, forge.victim_claims(), b""),
    "HMAC keyed with 'secret'": _hmac_keyed(b"secret"),
    "HMAC keyed with the kid": lambda forge: signed(
        forge.real_header(), forge.victim_claims(), str(forge.real_header()["kid"]).encode()
    ),
    "claims changed to the victim's, signature kept": lambda forge: _kept_signature(
        lambda header: header, lambda claims: claims | {"sub": forge.victim.user_id, "username": forge.victim.username}
    )(forge),
    "expiry pushed back a day, signature kept": _kept_signature(
        lambda header: header, lambda claims: claims | {"exp": claims["exp"] + 86400}
    ),
    "typ changed, signature kept": _kept_signature(lambda header: header | {"typ": "JWT"}, lambda claims: claims),
    "truncated by one character": _respelled(lambda token: token[:-1]),
    "a character appended": _respelled(lambda token: token + "x"),
    "the last four characters changed": _respelled(_changed_tail),
    "signature dropped": _respelled(lambda token: token.rsplit(".", 1)[0]),
    "signature empty": _respelled(lambda token: token.rsplit(".", 1)[0] + "."),
    "header only": _respelled(lambda token: token.split(".", 1)[0]),
    "half a token": _respelled(lambda token: token[: len(token) // 2]),
    "five segments (a JWE's shape)": _respelled(lambda token: f"{token}.e30.e30"),
    "padded with =": _respelled(lambda token: token + "="),
    "padded with ==": _respelled(lambda token: token + "=="),
    "a trailing dot": _respelled(lambda token: token + "."),
    "a fourth segment": _respelled(lambda token: token + ".e30"),
    "about 4000 characters": lambda forge: signed(forge.real_header(), forge.victim_claims(pad="A" * 2700), b"secret"),
    "header a JSON array": lambda forge: unsigned([], forge.victim_claims(), "AAAA"),
    "header not JSON": lambda forge: f"{b64url(b'not json')}.{b64json(forge.victim_claims())}.AAAA",
    "the victim's refresh token": lambda forge: forge.victim.refresh_token,
    "the victim's device token (signed by the stack, typ device+jwt)": lambda forge: forge.victim.device_token,
    "garbage": lambda forge: "not-a-token",
    "empty": lambda forge: "",
    "Anonymous, capitalised": lambda forge: "Anonymous",
}


def _with_defect(
    header: dict[str, Any] | None = None, algorithm: str = "HS256", **claims: Any
) -> Callable[[Forge], str]:
    """A token signed with the stack's key (`algorithm`'s HMAC), exact but for the header keys and claims given (a
    value None removes one)."""

    def build(forge: Forge) -> str:
        key = forge.with_key()
        return signed(access_header(key, **(header or {})), forge.victim_claims(**claims), key.secret, algorithm)

    return build


def _signed_claims(claims: Any) -> Callable[[Forge], str]:
    def build(forge: Forge) -> str:
        key = forge.with_key()
        return signed(access_header(key), claims, key.secret)

    return build


_HOUR = 3600
MAX_TOKEN_LENGTH = 2048  # leaderboard.tokens: a longer token is refused before it is parsed


def of_length(forge: Forge, length: int) -> str:
    """A token signed with the stack's key for the victim, exactly `length` characters long (a `pad` claim)."""
    key = forge.with_key()
    for jti_extra in range(4):  # unpadded base64 skips one length in four: another jti length reaches it
        for pad in range(length):
            claims = forge.victim_claims(pad="A" * pad, jti=secrets.token_hex(16) + "x" * jti_extra)
            token = signed(access_header(key), claims, key.secret)
            if len(token) >= length:
                break
        if len(token) == length:
            return token
    raise AssertionError(f"no token of {length} characters")


# Forgeries signed with the stack's own key, each with exactly one defect: each proves one check.
SIGNED: dict[str, Callable[[Forge], str]] = {
    "signed, alg HS384": _with_defect({"alg": "HS384"}, "HS384"),
    "signed, alg HS512": _with_defect({"alg": "HS512"}, "HS512"),
    "signed, alg hs256": _with_defect({"alg": "hs256"}),
    "signed, alg none": _with_defect({"alg": "none"}),
    "signed, typ missing": _with_defect({"typ": None}),
    "signed, typ JWT": _with_defect({"typ": "JWT"}),
    "signed, typ device+jwt": _with_defect({"typ": "device+jwt"}),
    "signed, typ AT+JWT": _with_defect({"typ": "AT+JWT"}),
    "signed, crit naming exp": _with_defect({"crit": ["exp"], "exp": 0}),
    "signed, crit unknown": _with_defect({"crit": ["urn:attacker:extension"], "urn:attacker:extension": True}),
    "signed, b64 false (RFC 7797)": _with_defect({"crit": ["b64"], "b64": False}),
    "signed, jku": _with_defect({"jku": _ATTACKER_URL}),
    "signed, jwk": _with_defect({"jwk": _ATTACKER_JWK}),
    "signed, x5u": _with_defect({"x5u": _ATTACKER_URL}),
    "signed, x5c": _with_defect({"x5c": [b64url(_RSA_PUBLIC_PEM)]}),
    "signed, x5t": _with_defect({"x5t": b64url(b"thumbprint")}),
    "signed, cty JWT (nested)": _with_defect({"cty": "JWT"}),
    "signed, zip DEF": _with_defect({"zip": "DEF"}),
    "signed, kid missing": _with_defect({"kid": None}),
    "signed, kid unknown": _with_defect({"kid": "00000000-0000-0000-0000-000000000000"}),
    "signed, kid a version stage's name": _with_defect({"kid": "AWSPREVIOUS"}),
    "signed, kid a path": _with_defect({"kid": "../../../../etc/passwd"}),
    "signed, kid a query-string injection": _with_defect({"kid": "x&versionStage=AWSCURRENT"}),
    "signed, iss missing": _with_defect(iss=None),
    "signed, aud missing": _with_defect(aud=None),
    "signed, exp missing": _with_defect(exp=None),
    "signed, iat missing": _with_defect(iat=None),
    "signed, sub missing": _with_defect(sub=None),
    "signed, jti missing": _with_defect(jti=None),
    "signed, username missing": _with_defect(username=None),
    "signed, name missing": _with_defect(name=None),
    "signed, iss another's": _with_defect(iss="urn:attacker"),
    "signed, aud another's": _with_defect(aud="another-api"),
    "signed, aud a list without ours": _with_defect(aud=["another-api"]),
    "signed, expired 60 s ago (past the 30 s leeway)": lambda forge: _with_defect(
        iat=int(time.time()) - 660, exp=int(time.time()) - 60
    )(forge),
    "signed, expired a day ago": lambda forge: _with_defect(
        iat=int(time.time()) - 24 * _HOUR - 600, exp=int(time.time()) - 24 * _HOUR
    )(forge),
    "signed, issued 120 s in the future": lambda forge: _with_defect(iat=int(time.time()) + 120)(forge),
    "signed, not before 120 s from now": lambda forge: _with_defect(nbf=int(time.time()) + 120)(forge),
    "signed, exp not a number": _with_defect(exp="tomorrow"),
    "signed, iat not a number": _with_defect(iat="now"),
    "signed, sub empty": _with_defect(sub=""),
    "signed, sub a number": _with_defect(sub=12345),
    "signed, sub a list": lambda forge: _with_defect(sub=[forge.victim.user_id])(forge),
    "signed, claims a JSON array": _signed_claims([]),
    "signed, claims a string": _signed_claims("claims"),
    "signed, 2049 characters (one over the limit)": lambda forge: of_length(forge, MAX_TOKEN_LENGTH + 1),
}

FORGERIES = KEYLESS | SIGNED


def forged(forge: Forge, name: str) -> str:
    if name in SIGNED and forge.key is None:
        pytest.skip("signed with the stack's own key: only the local runtime's can be read")
    return FORGERIES[name](forge)


# --- The HTTP API -----------------------------------------------------------------------------------------------------


def attack_the_victim(api_url: str, forge: Forge, headers: dict[str, str]) -> list[requests.Response]:
    """What a token accepted as the victim's would do: score the victim's open action, end the victim's session."""
    victim = forge.victim
    score = {"user_id": victim.user_id, "score": 1000, "action_id": forge.victim_action}
    return [
        requests.post(f"{api_url}/v1/scores", json=score, headers=headers, timeout=30),
        requests.post(
            f"{api_url}/v1/logout", json={"refresh_token": victim.refresh_token}, headers=headers, timeout=30
        ),
    ]


def assert_victim_unharmed(forge: Forge) -> None:
    forge.victim.assert_unscored()
    forge.victim.assert_session_lives()


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_token_is_refused_by_the_http_api_and_changes_nothing(api_url: str, forge: Forge, name: str) -> None:
    token = forged(forge, name)

    answers = attack_the_victim(api_url, forge, bearer(token))

    for answer in answers:
        assert_gateway(answer, 403, "Forbidden")
    assert_victim_unharmed(forge)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no Authorization header"),
        pytest.param("Basic {}", id="the victim's token, Basic scheme"),
        pytest.param("Token {}", id="the victim's token, Token scheme"),
        pytest.param("{}", id="the victim's token, no scheme"),
        pytest.param("Bearer {} {}", id="the victim's token twice"),
        pytest.param("Bearer", id="Bearer alone"),
    ],
)
def test_a_token_not_sent_as_a_bearer_token_is_refused_and_changes_nothing(
    api_url: str, forge: Forge, authorization: str | None
) -> None:
    token = forge.victim.access_token
    headers = {} if authorization is None else {"Authorization": authorization.format(token, token)}

    answers = attack_the_victim(api_url, forge, headers)

    for answer in answers:
        if authorization is None:
            assert_gateway(answer, 401, "Unauthorized")  # no identity source: API Gateway asks no authorizer
        else:
            assert_gateway(answer, 403, "Forbidden")
    assert_victim_unharmed(forge)


def test_an_access_token_in_the_query_string_is_not_read(api_url: str, forge: Forge) -> None:
    victim = forge.victim
    body = {"user_id": victim.user_id, "score": 1000, "action_id": forge.victim_action}

    answer = requests.post(f"{api_url}/v1/scores?access_token={victim.access_token}", json=body, timeout=30)

    assert_gateway(answer, 401, "Unauthorized")
    victim.assert_unscored()


@pytest.mark.parametrize(
    "kind",
    ["the access token", "the device token", "a refresh token with a trailing newline", "a refresh token padded"],
)
def test_only_a_refresh_token_refreshes_and_a_refused_one_changes_nothing(
    api_url: str, forge: Forge, kind: str
) -> None:
    victim = forge.victim
    value = {
        "the access token": victim.access_token,
        "the device token": victim.device_token,
        "a refresh token with a trailing newline": victim.refresh_token + "\n",
        "a refresh token padded": victim.refresh_token + "=",
    }[kind]

    refused = requests.post(f"{api_url}/v1/token/refresh", json={"refresh_token": value}, timeout=30)

    body = assert_problem(refused, 401)
    assert body["detail"] == "The refresh token is not valid; log in again."
    victim.assert_session_lives()  # not spent, not revoked


# --- The live feed: connect and subscribe -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_token_is_refused_at_connect(
    live: LiveFeed, forge: Forge, local_stack: Endpoints | None, name: str
) -> None:
    token = forged(forge, name)

    refused = asyncio.run(refused_connect(live, token))

    assert_live_refusal(refused, local_stack)


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_token_in_a_subscribe_message_is_refused_and_subscribes_nothing(
    live: LiveFeed, forge: Forge, local_stack: Endpoints | None, name: str
) -> None:
    token = forged(forge, name)

    async def refusals() -> list[Any]:
        # An anonymous connection, then the forged token in each subscribe: the victim's channel and a public board
        return [
            await refused_subscribe(live, f"/players/{forge.victim.user_id}", token),
            await refused_subscribe(live, "/boards/global", token),
        ]

    for refused in asyncio.run(refusals()):
        assert_live_refusal(refused, local_stack)


def test_the_forger_without_a_defect_makes_a_token_the_stack_accepts(
    api_url: str, live: LiveFeed, forge: Forge, local_stack: Endpoints | None
) -> None:
    """The control: every SIGNED forgery differs from this one by its defect alone, so its refusal is the defect's."""
    key = stack_signing_key(local_stack)
    bystander = Account(api_url)
    token = signed(access_header(key), access_claims(forge.attacker.access_token, bystander), key.secret)
    longest = of_length(Forge(forge.attacker, bystander, "", key), MAX_TOKEN_LENGTH)

    for accepted in (token, longest):
        started = requests.post(f"{api_url}/v1/actions", json={"type": "match"}, headers=bearer(accepted), timeout=30)
        assert started.status_code == 201, started.text

    async def subscribe_with_it() -> str:
        async with await EventSocket.connect(live.realtime_url, live.http_host, token) as socket:
            return await socket.subscribe(f"/players/{bystander.user_id}")

    assert asyncio.run(subscribe_with_it())


def test_a_subscribe_is_judged_by_its_own_authorization_not_the_connections(
    live: LiveFeed, forge: Forge, local_stack: Endpoints | None
) -> None:
    # A connection made with the victim's real token; a subscribe to their channel that carries a forged one
    victim = forge.victim
    forgery = unsigned(forge.real_header(alg="none"), forge.victim_claims())

    refused = asyncio.run(
        refused_subscribe(live, f"/players/{victim.user_id}", forgery, connect_as=victim.access_token)
    )

    assert_live_refusal(refused, local_stack)

    async def anonymous_then_own_token() -> str:
        # ...while an anonymous connection whose subscribe carries the victim's real token is theirs to make
        async with await EventSocket.connect(live.realtime_url, live.http_host, ANONYMOUS) as socket:
            return await socket.subscribe(f"/players/{victim.user_id}", victim.access_token, secrets.token_hex(8))

    assert asyncio.run(anonymous_then_own_token())
