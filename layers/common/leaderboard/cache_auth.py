"""ElastiCache IAM authentication: a connection's password is a short-lived token, a `connect` request to the cache
presigned with the function's role (SigV4, service `elasticache`), which redis-py asks for whenever it opens a
connection (a `CredentialProvider`). See AWS's ElastiCache guide, "Authenticating with IAM".

board.py imports this module only when REDIS_IAM_USER is set: botocore's signer adds about 50 ms to a cold start,
which the readers of a Redis without auth (the local runtime, the tests) do not pay.
"""

import time
from collections.abc import Callable
from urllib.parse import urlencode

import redis
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.session import get_session

# The longest a token may live (15 minutes). It is checked only when a connection authenticates, so one is reused for
# 10 minutes: any connection opened with it has 5 to spare.
TOKEN_SECONDS = 900
REUSE_SECONDS = 600


def role_credentials() -> ReadOnlyCredentials:
    """The function's role credentials as they stand (Lambda gives them in the environment)."""
    found = get_session().get_credentials()
    if found is None:
        raise redis.AuthenticationError("no AWS credentials to sign an ElastiCache IAM auth token with")
    frozen: ReadOnlyCredentials = found.get_frozen_credentials()
    return frozen


class IamAuth(redis.CredentialProvider):
    """The user and a fresh token of an IAM-enabled ElastiCache user (whose user id is its name, as IAM auth
    requires), for the serverless cache `cache_name` in `region`."""

    def __init__(
        self,
        user: str,
        cache_name: str,
        region: str,
        credentials: Callable[[], ReadOnlyCredentials] = role_credentials,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._user = user
        self._cache_name = cache_name
        self._region = region
        self._credentials = credentials
        self._clock = clock
        self._token = ""
        self._made_at = 0.0

    def get_credentials(self) -> tuple[str, str]:
        now = self._clock()
        if not self._token or now - self._made_at >= REUSE_SECONDS:
            self._token, self._made_at = self.token(), now
        return self._user, self._token

    def token(self) -> str:
        """A new token: the presigned URL of `GET https://<cache>/?Action=connect&User=<user>&ResourceType=
        ServerlessCache`, valid TOKEN_SECONDS, without its `https://`."""
        query = urlencode({"Action": "connect", "User": self._user, "ResourceType": "ServerlessCache"})
        request = AWSRequest(method="GET", url=f"https://{self._cache_name}/?{query}")
        SigV4QueryAuth(self._credentials(), "elasticache", self._region, expires=TOKEN_SECONDS).add_auth(request)
        return str(request.url).removeprefix("https://")
