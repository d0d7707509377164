"""The deployed stack's security properties, read from the template CloudFormation creates it from (SAM-translated):
who may call each route, what each role may do, what is encrypted with which key, what is kept and for how long."""

from typing import Any

import pytest

from tests.conftest import OPEN_ROUTES
from tests.template.stack import Stack, ref

IAM_ROUTE_PREFIXES = ("/v1/server/", "/v1/moderation/")
# Tables whose loss no rebuild can undo.
MUST_KEEP_TABLES = {
    "UsersTable",
    "TokenFamiliesTable",
    "ActionsTable",
    "PlayerTotalsTable",
    "DisplayNamesTable",
    "ModerationAuditTable",
    "SeasonArchiveTable",
}
# Services whose resources hold data: a role may never act on all of them at once.
DATA_SERVICES = {"dynamodb", "sqs", "secretsmanager", "kms", "elasticache", "appsync"}


def routes(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    body = stack.properties("HttpApi")["Body"]
    return {
        f"{method.upper()} {path}": operation["security"]
        for path, methods in body["paths"].items()
        for method, operation in methods.items()
    }


def test_every_route_but_the_public_ones_needs_a_token_and_the_backends_routes_need_iam(stack: Stack) -> None:
    for route, security in routes(stack).items():
        path = route.split(" ", 1)[1]
        expected = "NONE" if route in OPEN_ROUTES else "AccessTokenAuthorizer"
        if path.startswith(IAM_ROUTE_PREFIXES):
            expected = "AWS_IAM"
        assert security == [{expected: []}], route
    assert set(routes(stack)) >= OPEN_ROUTES


def test_the_token_authorizer_is_the_authorize_function_with_a_bounded_cache(stack: Stack) -> None:
    schemes = stack.properties("HttpApi")["Body"]["components"]["securitySchemes"]
    authorizer = schemes["AccessTokenAuthorizer"]["x-amazon-apigateway-authorizer"]

    assert ref(authorizer["authorizerUri"]["Fn::Sub"][1]["__FunctionArn__"]) == "AuthorizeFunction"
    assert authorizer["authorizerResultTtlInSeconds"] == 240  # README, the access-token window
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_login_register_and_password_routes_are_throttled_tighter_than_the_rest(stack: Stack) -> None:
    stage = stack.properties("HttpApiApiGatewayDefaultStage")
    default = stage["DefaultRouteSettings"]

    for route in ("POST /v1/login", "POST /v1/users", "POST /v1/password"):
        settings = stage["RouteSettings"][route]
        assert settings["ThrottlingRateLimit"] < default["ThrottlingRateLimit"], route
        assert settings["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"], route


def test_no_role_acts_on_every_resource_of_a_data_service(stack: Stack) -> None:
    for role_id in stack.of_type("AWS::IAM::Role"):
        for statement in stack.statements(role_id):
            if statement.services() & DATA_SERVICES:
                assert "*" not in statement.resources, (role_id, statement.actions)
                assert not any(action.endswith(":*") for action in statement.actions), (role_id, statement.actions)


def test_no_role_gets_an_aws_managed_policy_over_data(stack: Stack) -> None:
    # Lambda's basic, VPC and X-Ray policies (logs, ENIs, traces) are all a role may take from AWS; SAM's SQS event
    # would add AWSLambdaSQSQueueExecutionRole (every queue of the account), which the explicit mappings avoid.
    allowed = {"AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole", "AWSXrayWriteOnlyAccess"}
    for role_id in stack.of_type("AWS::IAM::Role"):
        assert set(stack.aws_managed_policies(role_id)) <= allowed, role_id


def test_each_function_has_a_role_of_its_own(stack: Stack) -> None:
    roles = [stack.role_of(function_id) for function_id in stack.functions()]

    assert len(set(roles)) == len(roles)


def test_the_data_key_is_used_only_through_the_services_that_hold_data_with_it(stack: Stack) -> None:
    for role_id in stack.of_type("AWS::IAM::Role"):
        for statement in stack.statements(role_id):
            if "kms" in statement.services():
                assert [ref(resource) for resource in statement.resources] == ["DataKey"], role_id
                assert set(statement.actions) <= {"kms:Decrypt", "kms:GenerateDataKey"}, role_id
                via = statement.condition["StringEquals"]["kms:ViaService"]
                assert {item["Fn::Sub"].split(".", 1)[0] for item in via} == {"dynamodb", "sqs", "secretsmanager"}


def test_a_function_that_touches_encrypted_data_may_decrypt_it_and_a_sender_may_encrypt(stack: Stack) -> None:
    for function_id in stack.functions():
        statements = stack.function_statements(function_id)
        actions = {action for statement in statements for action in statement.actions}
        uses_data = any(action.startswith(("dynamodb:", "sqs:", "secretsmanager:")) for action in actions)
        reads_secret = "SIGNING_KEY_SECRET_ARN" in stack.properties(function_id)["Environment"]["Variables"]
        if uses_data:
            assert "kms:Decrypt" in actions, function_id
        if "sqs:SendMessage" in actions:
            assert "kms:GenerateDataKey" in actions, function_id
        if "secretsmanager:GetSecretValue" in actions:
            assert reads_secret, function_id


def test_only_the_stacks_publisher_may_publish_to_the_event_api(stack: Stack) -> None:
    config = stack.properties("LiveApi")["EventConfig"]
    publishers = {
        function_id
        for function_id in stack.functions()
        for statement in stack.function_statements(function_id)
        if "appsync:EventPublish" in statement.actions
    }

    assert config["DefaultPublishAuthModes"] == [{"AuthType": "AWS_IAM"}]
    for namespace in stack.of_type("AWS::AppSync::ChannelNamespace").values():
        assert namespace["Properties"].get("PublishAuthModes", [{"AuthType": "AWS_IAM"}]) == [{"AuthType": "AWS_IAM"}]
    assert publishers == {"PublishEventsFunction"}


def test_every_table_is_encrypted_with_the_data_key(stack: Stack) -> None:
    for table_id, table in stack.of_type("AWS::DynamoDB::Table").items():
        sse = table["Properties"]["SSESpecification"]
        assert (sse["SSEEnabled"], sse["SSEType"], ref(sse["KMSMasterKeyId"])) == (True, "KMS", "DataKey"), table_id


def test_the_tables_that_hold_what_cannot_be_rebuilt_are_kept_and_recoverable(stack: Stack) -> None:
    tables = stack.of_type("AWS::DynamoDB::Table")

    assert set(tables) >= MUST_KEEP_TABLES
    for table_id in MUST_KEEP_TABLES:
        table = tables[table_id]
        # RetainExceptOnCreate: a failed first deploy leaves nothing behind; afterwards the data outlives the stack.
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain"), table_id
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_the_key_of_the_kept_tables_is_kept_with_them(stack: Stack) -> None:
    # A deleted stack keeps its tables; they stay readable only while the key that encrypts them lives.
    key = stack.resources["DataKey"]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_every_queue_the_secret_the_topic_and_the_cache_use_a_customer_managed_key(stack: Stack) -> None:
    for queue_id, queue in stack.of_type("AWS::SQS::Queue").items():
        assert ref(queue["Properties"]["KmsMasterKeyId"]) == "DataKey", queue_id
        assert "SqsManagedSseEnabled" not in queue["Properties"], queue_id
    assert ref(stack.properties("SigningKeySecret")["KmsKeyId"]) == "DataKey"
    assert ref(stack.properties("AlarmTopic")["KmsMasterKeyId"]) == "OpsKey"
    assert ref(stack.properties("BoardCache")["KmsKeyId"]) == "DataKey"


def test_the_keys_rotate_and_only_the_ops_key_lets_aws_services_in(stack: Stack) -> None:
    keys = stack.of_type("AWS::KMS::Key")

    assert set(keys) == {"DataKey", "OpsKey"}
    for key_id, key in keys.items():
        assert key["Properties"]["EnableKeyRotation"] is True, key_id
        services = [
            statement["Principal"]["Service"]
            for statement in key["Properties"]["KeyPolicy"]["Statement"]
            if "Service" in statement["Principal"]
        ]
        assert bool(services) == (key_id == "OpsKey"), key_id
    logs = next(
        statement
        for statement in keys["OpsKey"]["Properties"]["KeyPolicy"]["Statement"]
        if "logs." in str(statement["Principal"])
    )
    # CloudWatch Logs may use the key for this stack's log groups only.
    arns = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert all("${AWS::StackName}/*" in arn["Fn::Sub"] for arn in arns)


def test_every_function_logs_to_a_log_group_of_its_own_encrypted_and_expiring(stack: Stack) -> None:
    groups = stack.of_type("AWS::Logs::LogGroup")
    used = []
    for function_id, function in stack.functions().items():
        group_id = ref(function["Properties"]["LoggingConfig"]["LogGroup"])
        assert group_id in groups, function_id
        used.append(group_id)
    assert len(set(used)) == len(used)
    for group_id, group in groups.items():
        assert ref(group["Properties"]["KmsKeyId"]) == "OpsKey", group_id
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group_id
    access_logs = stack.properties("HttpApiApiGatewayDefaultStage")["AccessLogSettings"]
    assert ref(access_logs["DestinationArn"]) == "HttpApiAccessLogs"


def test_scores_go_to_the_dead_letter_queue_after_bounded_receives_and_someone_is_told(stack: Stack) -> None:
    redrive = stack.properties("ScoresQueue")["RedrivePolicy"]
    alarm = stack.properties("ScoresDeadLetterAlarm")

    assert ref(redrive["deadLetterTargetArn"]) == "ScoresDeadLetterQueue"
    assert 1 <= redrive["maxReceiveCount"] <= 10
    assert ref(alarm["Dimensions"][0]["Value"]) == "ScoresDeadLetterQueue"
    assert [ref(action) for action in alarm["AlarmActions"]] == ["AlarmTopic"]


@pytest.mark.parametrize(
    ("alarm_id", "namespace", "metric"),
    [
        ("ApplyScoresErrorsAlarm", "AWS/Lambda", "Errors"),
        ("ScoresBacklogAlarm", "AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AuthorizerErrorsAlarm", "AWS/Lambda", "Errors"),
        ("Api5xxAlarm", "AWS/ApiGateway", "5xx"),
        ("ApiLatencyAlarm", "AWS/ApiGateway", "Latency"),
        ("BoardCacheThrottledAlarm", "AWS/ElastiCache", "ThrottledCmds"),
        ("BoardCacheProcessingAlarm", "AWS/ElastiCache", "ElastiCacheProcessingUnits"),
        ("BoardCacheStorageAlarm", "AWS/ElastiCache", "BytesUsedForCache"),
        ("LiveApiErrorsAlarm", "AWS/AppSync", "5XXError"),
    ],
)
def test_the_operations_alarms_watch_what_they_say(stack: Stack, alarm_id: str, namespace: str, metric: str) -> None:
    alarm = stack.properties(alarm_id)
    watched = alarm if "MetricName" in alarm else alarm["Metrics"][0]["MetricStat"]["Metric"]

    assert (watched["Namespace"], watched["MetricName"]) == (namespace, metric)


def test_every_alarm_notifies_the_encrypted_topic(stack: Stack) -> None:
    alarms = stack.of_type("AWS::CloudWatch::Alarm")

    assert alarms
    for alarm_id, alarm in alarms.items():
        assert [ref(action) for action in alarm["Properties"]["AlarmActions"]] == ["AlarmTopic"], alarm_id


def test_the_cache_alarms_use_the_serverless_dimension_and_the_event_api_alarm_its_id(stack: Stack) -> None:
    for alarm_id in ("BoardCacheThrottledAlarm",):
        assert stack.properties(alarm_id)["Dimensions"] == [{"Name": "clusterId", "Value": {"Ref": "BoardCache"}}]
    metric = stack.properties("BoardCacheStorageAlarm")["Metrics"][0]["MetricStat"]["Metric"]
    assert metric["Dimensions"] == [{"Name": "clusterId", "Value": {"Ref": "BoardCache"}}]
    assert stack.properties("LiveApiErrorsAlarm")["Dimensions"] == [
        {"Name": "EventAPIId", "Value": {"Fn::GetAtt": ["LiveApi", "ApiId"]}}
    ]
