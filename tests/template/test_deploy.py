"""A first `sam deploy` into an empty account, in any region: what research/deploy-review.md found could break it
(B1-B4, K3-K6) stays fixed, and what an operator needs comes out of the stack."""

from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from tests.template import cloudformation
from tests.template.stack import Stack, ref

# Regions the SecretsExtension mapping lacks (the review's B1 list) and some it has.
UNMAPPED_REGIONS = ["eu-south-2", "me-central-1", "ap-south-2", "eu-central-2"]
MAPPED_REGIONS = ["us-east-1", "eu-west-3", "ap-northeast-2", "sa-east-1"]


def extension_layer(stack: Stack) -> Any:
    return stack.properties("ApplyScoresFunction")["Layers"][1]


def test_language_extensions_run_before_the_sam_transform(raw: dict[str, Any]) -> None:
    # B1: Fn::FindInMap with a DefaultValue needs AWS::LanguageExtensions, applied first.
    assert raw["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


@pytest.mark.parametrize("region", UNMAPPED_REGIONS)
def test_an_unmapped_region_with_the_layer_given_translates_and_uses_the_arn_given(region: str) -> None:
    # B1: CloudFormation evaluates FindInMap in an Fn::If branch it does not take; the default keeps that from failing.
    arn = f"arn:aws:lambda:{region}:111122223333:layer:AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:9"
    given = {"SecretsExtensionLayerArn": arn}
    stack = Stack(cloudformation.translated(region, given), given)

    assert extension_layer(stack) == {"Ref": "SecretsExtensionLayerArn"}


def test_an_unmapped_region_without_the_layer_is_refused_before_anything_is_created(raw: dict[str, Any]) -> None:
    rule = raw["Rules"]["SecretsExtensionIsMappedHere"]
    regions, region = rule["Assertions"][0]["Assert"]["Fn::Contains"]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "SecretsExtensionLayerArn"}, ""]}
    assert region == {"Ref": "AWS::Region"}
    assert sorted(regions) == sorted(raw["Mappings"]["SecretsExtension"])  # the rule and the mapping agree


@pytest.mark.parametrize("region", MAPPED_REGIONS)
def test_a_mapped_region_gets_its_own_account_and_layer_version(raw: dict[str, Any], region: str) -> None:
    # B2: the layer's version number differs by region.
    entry = raw["Mappings"]["SecretsExtension"][region]
    layer = extension_layer(Stack(cloudformation.translated(region)))

    template, values = layer["Fn::Sub"]
    assert template.endswith(":${Account}:layer:AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:${Version}")
    assert values == {"Account": entry["Account"], "Version": entry["Version"]}


def test_every_mapped_region_names_an_account_and_a_version(raw: dict[str, Any]) -> None:
    for region, entry in raw["Mappings"]["SecretsExtension"].items():
        assert set(entry) == {"Account", "Version"}, region
        assert len(entry["Account"]) == 12, region
        assert entry["Account"].isdigit(), region
        assert entry["Version"].isdigit(), region
    versions = {entry["Version"] for entry in raw["Mappings"]["SecretsExtension"].values()}
    assert len(versions) > 1  # one number for every region was finding B2


def test_cfn_lint_is_clean_in_mapped_and_unmapped_regions() -> None:
    matches = lint(
        cloudformation.TEMPLATE.read_text(),
        config=ManualArgs(regions=["us-east-1", *UNMAPPED_REGIONS[:2], "af-south-1"]),
    )

    assert [str(match) for match in matches] == []


def test_no_function_reserves_concurrency_and_the_queues_consumers_are_bounded(stack: Stack) -> None:
    # K4: ReservedConcurrentExecutions fails a deploy where unreserved concurrency would drop below 100.
    for function_id, function in stack.functions().items():
        assert "ReservedConcurrentExecutions" not in function["Properties"], function_id
    mappings = {
        ref(mapping["Properties"]["EventSourceArn"]): mapping["Properties"]
        for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {"ScoresQueue", "BoardChangesQueue", "LiveEventsQueue"}
    assert mappings["ScoresQueue"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "ScoresConsumerMaxConcurrency"}}
    assert mappings["ScoresQueue"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for queue_id, mapping in mappings.items():
        assert "MaximumConcurrency" in mapping["ScalingConfig"], queue_id


def test_each_consumer_may_poll_its_own_queue_and_no_other(stack: Stack) -> None:
    # K6: written by hand instead of SAM's AWSLambdaSQSQueueExecutionRole (every queue of the account).
    poll = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        function_id = ref(mapping["Properties"]["FunctionName"])
        queue_id = ref(mapping["Properties"]["EventSourceArn"])
        polled = [
            [ref(resource) for resource in statement.resources]
            for statement in stack.function_statements(str(function_id))
            if poll & set(statement.actions)
        ]
        assert polled == [[queue_id]], function_id


def test_the_queues_visibility_timeouts_are_six_times_their_consumers_timeouts(stack: Stack) -> None:
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        function = stack.properties(str(ref(mapping["Properties"]["FunctionName"])))
        queue = stack.properties(str(ref(mapping["Properties"]["EventSourceArn"])))
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"], ref(mapping["Properties"]["EventSourceArn"])


def test_every_function_is_traced_logs_json_without_lambdas_own_lines_and_has_a_metrics_namespace(
    stack: Stack, raw: dict[str, Any]
) -> None:
    assert raw["Parameters"]["TracingMode"]["Default"] == "Active"
    for function_id, function in stack.functions().items():
        properties = function["Properties"]
        assert properties["TracingConfig"] == {"Mode": {"Ref": "TracingMode"}}, function_id
        assert (properties["LoggingConfig"]["LogFormat"], properties["LoggingConfig"]["SystemLogLevel"]) == (
            "JSON",
            "WARN",
        ), function_id
        assert properties["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "Leaderboard"


def test_an_alarm_email_subscribes_to_the_topic_only_when_given(stack: Stack) -> None:
    assert "AlarmEmailSubscription" not in stack.resources
    given = Stack(stack.template, {"AlarmEmail": "ops@example.com"})
    subscription = given.properties("AlarmEmailSubscription")
    assert (subscription["Protocol"], ref(subscription["TopicArn"])) == ("email", "AlarmTopic")


def test_the_stack_outputs_every_url_a_client_needs(stack: Stack) -> None:
    outputs = stack.template["Outputs"]

    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].startswith("https://${HttpApi}.execute-api.")
    assert outputs["LiveRealtimeUrl"]["Value"] == {"Fn::Sub": "wss://${LiveApi.Dns.Realtime}/event/realtime"}
    assert outputs["LiveHttpUrl"]["Value"] == {"Fn::Sub": "https://${LiveApi.Dns.Http}/event"}
    assert outputs["PageUrl"]["Condition"] == "HasPageOrigin"
    assert {"AlarmTopicArn", "BoardCacheName", "SigningKeySecretArn"} <= set(outputs)


def test_names_aws_caps_do_not_depend_on_the_stacks_name(stack: Stack) -> None:
    # B3's kin: the Event API's name (at most 50 characters) comes from Stage, whose pattern caps it.
    name = stack.properties("LiveApi")["Name"]["Fn::Sub"]
    assert "AWS::StackName" not in name
    assert len(name.replace("${Stage}", "x" * 10)) <= 50


def test_player_totals_are_on_demand_unless_provisioned_then_auto_scaled_at_70_percent(stack: Stack) -> None:
    from tests.template import cloudformation

    provisioned = Stack(cloudformation.translated(), {"PlayerTotalsCapacity": "provisioned"})

    assert stack.properties("PlayerTotalsTable")["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in stack.properties("PlayerTotalsTable")
    assert not stack.of_type("AWS::ApplicationAutoScaling::ScalableTarget")
    table = provisioned.properties("PlayerTotalsTable")
    assert table["BillingMode"] == "PROVISIONED"
    assert table["ProvisionedThroughput"] == {
        "ReadCapacityUnits": {"Ref": "PlayerTotalsMinUnits"},
        "WriteCapacityUnits": {"Ref": "PlayerTotalsMinUnits"},
    }
    targets = provisioned.of_type("AWS::ApplicationAutoScaling::ScalableTarget")
    assert sorted(target["Properties"]["ScalableDimension"] for target in targets.values()) == [
        "dynamodb:table:ReadCapacityUnits",
        "dynamodb:table:WriteCapacityUnits",
    ]
    for target in targets.values():
        assert target["Properties"]["ResourceId"] == {"Fn::Sub": "table/${PlayerTotalsTable}"}
    policies = provisioned.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert sorted(
        (
            policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            ref(policy["Properties"]["ScalingTargetId"]),
        )
        for policy in policies
    ) == [(70, "PlayerTotalsReadScaling"), (70, "PlayerTotalsWriteScaling")]
