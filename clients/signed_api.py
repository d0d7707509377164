"""Calls to the HTTP API's IAM-authorized routes (``Auth: Authorizer: AWS_IAM``): requests signed with SigV4 for
``execute-api`` by botocore, AWS's own signer.

For the studio's game servers, its operators' scripts and the e2e tests, against a deployed stack or the local runtime
(which checks the signature with its local credentials)::

    response = signed_api.post(f"{api_url}/v1/server/scores", {"user_id": ..., "score": 420})
    requests.get(url, auth=ExecuteApiAuth(credentials), timeout=10)    # any other method, as a requests auth

Credentials are the ones given, else boto3's default chain (environment, ``AWS_PROFILE``, SSO, an instance or Lambda
role...), read again at each request so temporary ones are refreshed. The region is the one given, else the URL's
(``<api>.execute-api.<region>.amazonaws.com``), else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the profile's: a custom
domain or the local runtime's ``127.0.0.1`` names none. Only ``host``, ``x-amz-date``, ``content-type`` and the
session token are signed, so a proxy that rewrites other headers cannot break the signature. A query string must be
sent RFC 3986-encoded (``%20``, not ``+``), as SigV4 signs it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

SERVICE = "execute-api"
TIMEOUT_SECONDS = 30.0
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class SigningError(Exception):
    """The request cannot be signed: no credentials, no region, or a body that is not bytes."""


def region_of(url: str) -> str | None:
    """The region an API Gateway URL names (``https://abc.execute-api.eu-west-1.amazonaws.com/...``), else None."""
    found = _REGION_IN_HOST.search(urlsplit(url).hostname or "")
    return found.group(1) if found else None


class ExecuteApiAuth(requests.auth.AuthBase):
    """A requests auth that signs each request with SigV4 for ``execute-api``."""

    def __init__(self, credentials: Credentials | None = None, region: str | None = None) -> None:
        self._credentials = credentials
        self._region = region

    @functools.cached_property
    def _session(self) -> boto3.session.Session:
        # Made once: it holds the default chain's credentials (and refreshes temporary ones).
        return boto3.session.Session()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        body = request.body.encode() if isinstance(request.body, str) else request.body
        if body is not None and not isinstance(body, bytes):
            raise SigningError("a streamed body cannot be signed: pass bytes, text or JSON")
        headers = {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else {}
        signable = AWSRequest(method=request.method, url=url, data=body or b"", headers=headers)
        SigV4Auth(self._frozen_credentials(), SERVICE, self._region_for(url)).add_auth(signable)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signable.headers:
                request.headers[name] = signable.headers[name]
        return request

    def _frozen_credentials(self) -> ReadOnlyCredentials:
        credentials = self._credentials or self._session.get_credentials()
        if credentials is None:
            raise SigningError("no AWS credentials: pass some, or configure the default chain (AWS_PROFILE...)")
        frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
        return frozen

    def _region_for(self, url: str) -> str:
        region = (
            self._region
            or region_of(url)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or self._session.region_name
        )
        if not region:
            raise SigningError(f"no region for {url}: pass one, or set AWS_DEFAULT_REGION")
        return region


def post(
    url: str,
    json_body: Any,
    credentials: Credentials | None = None,
    *,
    region: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> requests.Response:
    """POST ``json_body`` as JSON to ``url``, signed; the response whatever its status (check it)."""
    return requests.post(
        url,
        data=json.dumps(json_body, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=ExecuteApiAuth(credentials, region),
        timeout=timeout,
    )
