"""The board's network and cache: which functions sit in the VPC, that every AWS service they call has a route from
there, and the cache's encryption and access control (ElastiCache IAM authentication)."""

import re
from typing import Any

import pytest

from tests.template.stack import Stack, ref

# How a VPC function reaches each service its role may call. The subnets have no internet route, so every other
# service must be in NO_ROUTE_NEEDED with the reason, or the test fails.
ENDPOINT_SERVICES = {"dynamodb": "Gateway", "sqs": "Interface"}
NO_ROUTE_NEEDED = {
    "elasticache": "elasticache:Connect is checked on the IAM token, which the function signs itself (no API call)",
    "kms": "used by DynamoDB and SQS on the function's behalf (kms:ViaService), never called by the function",
    "logs": "Lambda ships the function's logs itself, outside the function's network interface",
    "xray": "Lambda sends the traces of active tracing itself",
    "ec2": "the network interfaces are Lambda's to create (AWSLambdaVPCAccessExecutionRole)",
}
# Actions of the AWS-managed policies SAM attaches, by policy.
MANAGED_POLICY_SERVICES = {
    "AWSLambdaBasicExecutionRole": {"logs"},
    "AWSLambdaVPCAccessExecutionRole": {"logs", "ec2"},
    "AWSXrayWriteOnlyAccess": {"xray"},
}
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"


def evaluate(node: Any, stack_id: str, stage: str) -> Any:
    """A name built with Sub/Select/Split from the stack's id and Stage, as CloudFormation computes it."""
    if isinstance(node, list):
        return [evaluate(item, stack_id, stage) for item in node]
    if not isinstance(node, dict):
        return node
    ((name, argument),) = node.items()
    match name:
        case "Ref":
            return {"AWS::StackId": stack_id, "Stage": stage}[argument]
        case "Fn::Join":
            return argument[0].join(evaluate(argument[1], stack_id, stage))
        case "Fn::Split":
            return evaluate(argument[1], stack_id, stage).split(argument[0])
        case "Fn::Select":
            return evaluate(argument[1], stack_id, stage)[argument[0]]
        case "Fn::Sub":
            text, variables = argument
            values = {"Stage": stage} | {key: evaluate(value, stack_id, stage) for key, value in variables.items()}
            return re.sub(r"\$\{(\w+)\}", lambda match: values[match.group(1)], text)
    raise AssertionError(f"unexpected {name}")


def services_of(stack: Stack, function_id: str) -> set[str]:
    role_id = stack.role_of(function_id)
    services = {service for statement in stack.statements(role_id) for service in statement.services()}
    for policy in stack.aws_managed_policies(role_id):
        services |= MANAGED_POLICY_SERVICES[policy]
    return services


def redis_functions(stack: Stack) -> set[str]:
    return {
        function_id
        for function_id, function in stack.functions().items()
        if "REDIS_URL" in function["Properties"].get("Environment", {}).get("Variables", {})
    }


def test_the_functions_in_the_vpc_are_exactly_those_that_use_redis(stack: Stack) -> None:
    assert set(stack.vpc_functions()) == redis_functions(stack)
    assert len(redis_functions(stack)) >= 10
    for function_id in stack.vpc_functions():
        variables = stack.properties(function_id)["Environment"]["Variables"]
        assert variables["REDIS_URL"]["Fn::Sub"].startswith("rediss://"), function_id  # TLS: serverless has no other
        assert ref(variables["REDIS_IAM_USER"]) == "BoardCacheUser", function_id
        assert ref(variables["CACHE_NAME"]) == "BoardCache", function_id
        config = stack.properties(function_id)["VpcConfig"]
        assert [ref(subnet) for subnet in config["SubnetIds"]] == ["PrivateSubnetA", "PrivateSubnetB"], function_id
        assert [ref(group) for group in config["SecurityGroupIds"]] == ["FunctionSecurityGroup"], function_id


def test_every_aws_service_a_vpc_function_may_call_has_a_route_from_its_subnets(stack: Stack) -> None:
    endpoints = {
        endpoint["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]: endpoint["Properties"]
        for endpoint in stack.of_type("AWS::EC2::VPCEndpoint").values()
    }
    route_tables = {
        ref(association["Properties"]["SubnetId"]): ref(association["Properties"]["RouteTableId"])
        for association in stack.of_type("AWS::EC2::SubnetRouteTableAssociation").values()
    }
    for function_id in stack.vpc_functions():
        config = stack.properties(function_id)["VpcConfig"]
        subnets = {ref(subnet) for subnet in config["SubnetIds"]}
        groups = {ref(group) for group in config["SecurityGroupIds"]}
        for service in services_of(stack, function_id):
            if service in NO_ROUTE_NEEDED:
                continue
            assert service in ENDPOINT_SERVICES, f"{function_id} calls {service}, which nothing routes to"
            assert service in endpoints, f"{function_id} calls {service}, which has no endpoint in the VPC"
            endpoint = endpoints[service]
            assert endpoint["VpcEndpointType"] == ENDPOINT_SERVICES[service]
            if endpoint["VpcEndpointType"] == "Gateway":
                tables = {ref(table) for table in endpoint["RouteTableIds"]}
                assert {route_tables[subnet] for subnet in subnets} <= tables, (function_id, service)
            else:
                assert endpoint["PrivateDnsEnabled"] is True  # the SDK's default hostname resolves to it
                assert subnets <= {ref(subnet) for subnet in endpoint["SubnetIds"]}, (function_id, service)
                admitted = {
                    ref(rule["SourceSecurityGroupId"])
                    for group in endpoint["SecurityGroupIds"]
                    for rule in stack.properties(ref(group))["SecurityGroupIngress"]
                    if (rule["FromPort"], rule["ToPort"]) == (443, 443)
                }
                assert groups <= admitted, (function_id, service)


def test_no_vpc_function_needs_the_signing_key(stack: Stack) -> None:
    for function_id in stack.vpc_functions():
        assert "secretsmanager" not in services_of(stack, function_id), function_id


def test_a_function_may_connect_to_the_cache_only_if_it_uses_redis_and_only_as_the_cache_user(stack: Stack) -> None:
    for function_id in stack.functions():
        connects = [
            statement for statement in stack.function_statements(function_id) if "elasticache" in statement.services()
        ]
        if function_id not in redis_functions(stack):
            assert not connects, function_id
            continue
        (statement,) = connects
        assert statement.actions == ["elasticache:Connect"]
        assert statement.resources == [
            {"Fn::GetAtt": ["BoardCache", "ARN"]},
            {"Fn::GetAtt": ["BoardCacheUser", "Arn"]},
        ]


def test_the_cache_is_encrypted_limited_and_admits_only_its_iam_user(stack: Stack) -> None:
    cache = stack.properties("BoardCache")
    user = stack.properties("BoardCacheUser")
    group = stack.properties("BoardCacheUsers")

    assert (cache["Engine"], ref(cache["KmsKeyId"])) == ("valkey", "DataKey")
    assert ref(cache["UserGroupId"]) == "BoardCacheUsers"
    assert cache["CacheUsageLimits"] == {
        "DataStorage": {"Maximum": {"Ref": "CacheMaxDataStorageGB"}, "Unit": "GB"},
        "ECPUPerSecond": {"Maximum": {"Ref": "CacheMaxECPUPerSecond"}},
    }
    assert (user["Engine"], user["AuthenticationMode"]) == ("valkey", {"Type": "iam"})
    assert user["UserId"] == user["UserName"]  # IAM authentication requires it
    assert user["AccessString"].startswith("on ~leaderboard:* ")  # the stack's keys only
    # A Valkey user group needs no `default` user; without one, no connection goes unauthenticated.
    assert (group["Engine"], group["UserIds"]) == ("valkey", [{"Ref": "BoardCacheUser"}])


def test_the_cache_admits_the_functions_security_group_only_on_its_ports(stack: Stack) -> None:
    (rule,) = stack.properties("CacheSecurityGroup")["SecurityGroupIngress"]

    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6379, 6380)
    assert ref(rule["SourceSecurityGroupId"]) == "FunctionSecurityGroup"
    assert [ref(group) for group in stack.properties("BoardCache")["SecurityGroupIds"]] == ["CacheSecurityGroup"]


@pytest.mark.parametrize("stack_name", ["lb", "a-studio-leaderboard-with-a-very-long-stack-name-for-production-use"])
@pytest.mark.parametrize("stage", ["prod", "staging123"])
def test_the_cache_and_its_users_have_short_lowercase_names_unique_to_the_stack(
    stack: Stack, stack_name: str, stage: str
) -> None:
    stack_id = STACK_ID.format(name=stack_name)
    names = {
        "cache": evaluate(stack.properties("BoardCache")["ServerlessCacheName"], stack_id, stage),
        "user": evaluate(stack.properties("BoardCacheUser")["UserId"], stack_id, stage),
        "group": evaluate(stack.properties("BoardCacheUsers")["UserGroupId"], stack_id, stage),
    }

    for kind, name in names.items():
        # ElastiCache: 1-40 characters, a letter first, letters, digits and single hyphens, stored lowercase.
        assert re.fullmatch(r"[a-z](?:-?[a-z0-9])*", name), (kind, name)
        assert len(name) <= 40, (kind, name)
        assert "1f2e3d4c" in name, (kind, name)  # from the stack's id: another stack gets other names
    assert re.fullmatch(stack.template["Parameters"]["Stage"]["AllowedPattern"], stage)


def test_the_subnets_take_the_zones_given_else_the_regions_first_two(stack: Stack) -> None:
    zones = stack.template["Parameters"]["AvailabilityZones"]
    condition = stack.template["Conditions"]["HasAvailabilityZones"]

    assert (zones["Type"], zones["Default"]) == ("CommaDelimitedList", "")
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "AvailabilityZones"}]}, ""]}]}
    assert stack.conditions["HasAvailabilityZones"] is False
    for index, subnet_id in enumerate(("PrivateSubnetA", "PrivateSubnetB")):
        assert stack.properties(subnet_id)["AvailabilityZone"] == {"Fn::Select": [index, {"Fn::GetAZs": ""}]}
    given = Stack(stack.template, {"AvailabilityZones": "us-east-1d,us-east-1f"})
    assert given.properties("PrivateSubnetB")["AvailabilityZone"] == {"Fn::Select": [1, {"Ref": "AvailabilityZones"}]}


def test_with_an_existing_cache_the_stack_creates_no_cache_nor_network_and_joins_the_one_given(
    existing_cache_stack: Stack,
) -> None:
    stack = existing_cache_stack
    created = {resource["Type"] for resource in stack.resources.values()}

    assert not {"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup"} & created
    assert not {"AWS::ElastiCache::ServerlessCache", "AWS::ElastiCache::User", "AWS::ElastiCache::UserGroup"} & created
    for function_id in stack.vpc_functions():
        properties = stack.properties(function_id)
        assert properties["VpcConfig"] == {
            "SubnetIds": {"Ref": "ExistingSubnetIds"},
            "SecurityGroupIds": {"Ref": "ExistingSecurityGroupIds"},
        }
        variables = properties["Environment"]["Variables"]
        assert variables["REDIS_URL"] == {"Fn::Sub": "rediss://${ExistingCacheEndpoint}/0"}
        assert (variables["REDIS_IAM_USER"], variables["CACHE_NAME"]) == (
            {"Ref": "ExistingCacheUserId"},
            {"Ref": "ExistingCacheName"},
        )
    connect = stack.properties("BoardCacheConnectPolicy")["PolicyDocument"]["Statement"][0]["Resource"]
    assert [item["Fn::Sub"].rsplit(":", 2)[-2:] for item in connect] == [
        ["serverlesscache", "${ExistingCacheName}"],
        ["user", "${ExistingCacheUserId}"],
    ]


def test_an_existing_cache_must_come_with_its_name_user_subnets_and_security_groups(raw: dict[str, Any]) -> None:
    rule = raw["Rules"]["ExistingCacheIsComplete"]
    required = {str(assertion["Assert"]) for assertion in rule["Assertions"]}

    for parameter in ("ExistingCacheName", "ExistingCacheUserId", "ExistingSubnetIds", "ExistingSecurityGroupIds"):
        assert any(f"'Ref': '{parameter}'" in text for text in required), parameter
