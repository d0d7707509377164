"""Smoke test of the HTTP API's own answers (API Gateway's, not a function's): routing and the authorizer."""

import pytest
import requests

pytestmark = pytest.mark.e2e


def test_an_unknown_route_is_api_gateways_404(api_url: str) -> None:
    response = requests.get(f"{api_url}/v1/no-such-route", timeout=30)

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"message": "Not Found"}


def test_a_protected_route_without_a_token_is_401_before_the_authorizer(api_url: str) -> None:
    response = requests.post(f"{api_url}/v1/logout", json={"refresh_token": "x"}, timeout=30)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_a_protected_route_with_a_garbage_token_is_403(api_url: str) -> None:
    response = requests.post(
        f"{api_url}/v1/logout", json={"refresh_token": "x"}, headers={"Authorization": "Bearer garbage"}, timeout=30
    )

    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
