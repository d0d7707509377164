"""The template reader takes HttpApi routes with ``Authorizer: AWS_IAM`` as SAM does: only where the API enables the
IAM authorizer."""

import textwrap
from pathlib import Path

import pytest
import yaml

from local.gateway import Gateway
from local.specs import AWS_IAM, ResourceIdentity
from local.template import Template, TemplateError, load_yaml
from tests.unit.fake_functions import FakeFunctions

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leaderboard-local-SigningKeySecret-AbCdEf"


def template_of(tmp_path: Path, text: str) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return Template(path)


def test_a_route_takes_aws_iam_from_its_event_or_from_the_apis_default(tmp_path: Path) -> None:
    template = template_of(
        tmp_path,
        """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Api:
            Type: AWS::Serverless::HttpApi
            Properties:
              Auth: {EnableIamAuthorizer: true, DefaultAuthorizer: AWS_IAM}
          Moderate:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: code/
              Handler: moderate.handler
              Events:
                Ban: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: /v1/moderation/bans}}
                Health:
                  Type: HttpApi
                  Properties: {ApiId: !Ref Api, Method: GET, Path: /health, Auth: {Authorizer: NONE}}
        """,
    )

    routes = {route.route_key: route.authorizer for route in template.http_routes()}

    assert routes == {"POST /v1/moderation/bans": AWS_IAM, "GET /health": None}


def test_the_implicit_api_enables_iam_through_globals(tmp_path: Path) -> None:
    template = template_of(
        tmp_path,
        """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          HttpApi:
            Auth: {EnableIamAuthorizer: true}
        Resources:
          ServerScores:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: code/
              Handler: post.handler
              Events:
                Post: {Type: HttpApi, Properties: {Method: POST, Path: /v1/server/scores, Auth: {Authorizer: AWS_IAM}}}
        """,
    )

    assert [route.authorizer for route in template.http_routes()] == [AWS_IAM]


def test_aws_iam_without_enable_iam_authorizer_is_refused_as_sam_refuses_it(tmp_path: Path) -> None:
    template = template_of(
        tmp_path,
        """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Api:
            Type: AWS::Serverless::HttpApi
          ServerScores:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: code/
              Handler: post.handler
              Events:
                Post:
                  Type: HttpApi
                  Properties: {ApiId: !Ref Api, Method: POST, Path: /v1/server/scores, Auth: {Authorizer: AWS_IAM}}
        """,
    )

    with pytest.raises(TemplateError, match=r"ServerScores\.Post: Authorizer AWS_IAM needs EnableIamAuthorizer: true"):
        template.http_routes()


def test_a_copy_of_template_yaml_with_an_iam_route_is_served_beside_the_lambda_authorizer(tmp_path: Path) -> None:
    # Given template.yaml with the IAM authorizer enabled and one more function on an IAM route
    document = load_yaml((PROJECT_ROOT / "template.yaml").read_text())
    document["Resources"]["HttpApi"]["Properties"]["Auth"]["EnableIamAuthorizer"] = True
    document["Resources"]["ServerScoresProbe"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "functions/scores/",
            "Handler": "post_score.lambda_handler",
            "Events": {
                "Post": {
                    "Type": "HttpApi",
                    "Properties": {
                        "ApiId": {"Ref": "HttpApi"},
                        "Method": "POST",
                        "Path": "/v1/server/scores-probe",
                        "Auth": {"Authorizer": "AWS_IAM"},
                    },
                }
            },
        },
    }
    copy = tmp_path / "template.yaml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))

    # When the runtime reads it
    template = Template(copy)
    identities = template.default_identities() | {"SigningKeySecret": ResourceIdentity(SECRET_ARN, {"Id": SECRET_ARN})}
    routes = {route.route_key: route for route in template.http_routes()}
    gateway = Gateway(routes.values(), template.http_authorizers(identities), FakeFunctions(), say=lambda _: None)

    # Then the new route is IAM-authorized and every other route keeps its authorizer
    assert routes["POST /v1/server/scores-probe"].authorizer == AWS_IAM
    assert routes["POST /v1/logout"].authorizer == "AccessTokenAuthorizer"
    assert routes["POST /v1/users"].authorizer is None
    assert len(gateway.routes.routes) == len(routes)
