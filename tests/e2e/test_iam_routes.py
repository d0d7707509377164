"""The IAM-authorized routes (game servers, operators) answer as API Gateway does: without a valid SigV4 signature the
gateway refuses them itself; signed by ``iam_auth`` (the local credentials, or the environment's against API_URL) they
reach their function, which judges the body."""

import pytest
import requests

from clients.signed_api import ExecuteApiAuth

IAM_ROUTES = ["/v1/server/scores", "/v1/moderation/removals", "/v1/moderation/bans", "/v1/moderation/unbans"]


@pytest.mark.parametrize("path", IAM_ROUTES)
@pytest.mark.parametrize(
    "headers", [pytest.param({}, id="unsigned"), pytest.param({"Authorization": "Bearer x"}, id="a-bearer-token")]
)
def test_an_iam_route_without_a_signature_is_api_gateways_403(api_url: str, path: str, headers: dict[str, str]) -> None:
    response = requests.post(f"{api_url}{path}", json={}, headers=headers, timeout=30)

    assert (response.status_code, response.json()) == (403, {"message": "Forbidden"})


def test_a_signed_request_reaches_the_function_which_refuses_a_bad_body_with_a_problem(
    api_url: str, iam_auth: ExecuteApiAuth
) -> None:
    response = requests.post(f"{api_url}/v1/server/scores", json={"unexpected": True}, auth=iam_auth, timeout=30)

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")


def test_a_body_changed_after_signing_is_refused_by_the_gateway(api_url: str, iam_auth: ExecuteApiAuth) -> None:
    request = requests.Request("POST", f"{api_url}/v1/server/scores", json={"user_id": "u-1", "score": 1}).prepare()
    iam_auth(request)
    request.body = b'{"user_id":"u-1","score":1000}'
    request.headers["Content-Length"] = str(len(request.body))

    with requests.Session() as session:
        response = session.send(request, timeout=30)

    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "The request signature we calculated does not match the signature you provided."
    )
