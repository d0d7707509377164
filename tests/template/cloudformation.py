"""template.yaml as CloudFormation deploys it: AWS::LanguageExtensions first, then the SAM transform (samtranslator,
the library `sam validate` and CloudFormation's hosted transform run), for a region and parameter values.

Runs in the tools venv (.venv-tools: samtranslator comes with aws-sam-cli). `python -m tests.template.cloudformation`
prints the translated template as JSON (what `make template` scans with checkov).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
# What `sam package` puts where the template names local folders; the translator accepts only S3 locations.
PACKAGED_CODE = "s3://packaged-code/artifact.zip"


def raw_template() -> dict[str, Any]:
    """template.yaml parsed, short intrinsic tags in their long form."""
    document: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return document


def language_extensions(template: dict[str, Any], region: str) -> dict[str, Any]:
    """What the AWS::LanguageExtensions transform changes in this template: Fn::FindInMap with a DefaultValue is looked
    up (CloudFormation resolves it at transform time, in every branch of an Fn::If, taken or not)."""
    mappings = template.get("Mappings") or {}

    def key(value: Any) -> Any:
        return region if value == {"Ref": "AWS::Region"} else value

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::FindInMap"} and len(node["Fn::FindInMap"]) == 4:
            name, top, second, options = node["Fn::FindInMap"]
            return (mappings.get(name) or {}).get(key(top), {}).get(key(second), options["DefaultValue"])
        return {name: resolve(value) for name, value in node.items()}

    processed = resolve(copy.deepcopy(template))
    processed["Transform"] = [name for name in processed["Transform"] if name != "AWS::LanguageExtensions"]
    return dict(processed)


def _no_managed_policies() -> dict[str, str]:
    # The translator asks for the account's managed policies only for policy names in Policies; the template names
    # none (SAM's own, such as AWSLambdaBasicExecutionRole, it writes as ARNs).
    return {}


def translated(region: str = REGION, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template CloudFormation would create the stack from."""
    template = language_extensions(raw_template(), region)
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = PACKAGED_CODE
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = PACKAGED_CODE
    values = {"AWS::AccountId": ACCOUNT_ID, **(parameters or {})}
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    output: dict[str, Any] = translator.translate(
        template, parameter_values=values, get_managed_policy_map=_no_managed_policies, passthrough_metadata=True
    )
    return output


if __name__ == "__main__":
    json.dump(translated(), sys.stdout, indent=1, sort_keys=True)
    print()
