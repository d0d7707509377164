"""The local runtime's template reader: short tags, intrinsics, Globals, and what it reads from template.yaml."""

import json
import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from leaderboard import auth, scores
from local.schedule_expressions import CronSchedule, RateSchedule
from local.specs import ChannelHandler, ChannelNamespaceSpec, EventAuthorizer, ResourceIdentity
from local.template import (
    Resolver,
    Template,
    TemplateError,
    dependencies,
    load_yaml,
    merge_globals,
)
from tests.conftest import OPEN_ROUTES, load_event

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leaderboard-local-SigningKeySecret-AbCdEf"


@pytest.fixture(scope="module")
def template() -> Template:
    return Template(PROJECT_ROOT / "template.yaml")


@pytest.fixture(scope="module")
def identities(template: Template) -> dict[str, ResourceIdentity]:
    # The secret's ARN comes from Secrets Manager at start; every other identity the runtime picks itself.
    return template.default_identities() | {"SigningKeySecret": ResourceIdentity(SECRET_ARN, {"Id": SECRET_ARN})}


def test_short_tags_load_as_their_long_forms() -> None:
    document = load_yaml(
        """
        a: !Ref Thing
        b: !GetAtt Table.Arn
        c: !Sub "x-${AWS::Region}"
        d: !Sub ["${A}-${B}", {A: !Ref P}]
        e: !If [Cond, big, small]
        f: !Equals [!Ref P, ""]
        g: !FindInMap [M, !Ref "AWS::Region", Key]
        h: !Join [",", [a, b]]
        i: !Select [1, !Split [",", "a,b"]]
        """
    )

    assert document == {
        "a": {"Ref": "Thing"},
        "b": {"Fn::GetAtt": ["Table", "Arn"]},
        "c": {"Fn::Sub": "x-${AWS::Region}"},
        "d": {"Fn::Sub": ["${A}-${B}", {"A": {"Ref": "P"}}]},
        "e": {"Fn::If": ["Cond", "big", "small"]},
        "f": {"Fn::Equals": [{"Ref": "P"}, ""]},
        "g": {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "Key"]},
        "h": {"Fn::Join": [",", ["a", "b"]]},
        "i": {"Fn::Select": [1, {"Fn::Split": [",", "a,b"]}]},
    }


def test_the_resolver_evaluates_parameters_conditions_mappings_and_pseudo_parameters() -> None:
    document = load_yaml(
        """
        Parameters:
          Stage: {Type: String, Default: dev}
          Size: {Type: Number, Default: 3}
        Mappings:
          Accounts: {us-east-1: {Id: "111"}}
        Conditions:
          IsProd: !Equals [!Ref Stage, prod]
          IsNotProd: !Not [!Condition IsProd]
        """
    )
    resolver = Resolver(document, {"Table": ResourceIdentity("t-name", {"Arn": "arn:t"})})

    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}/${Stage}/${Size}/${AWS::AccountId}"}) == (
        "leaderboard-local/dev/3/123456789012"
    )
    account = {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::Region"}, "Id"]}
    assert resolver.resolve({"Fn::Sub": ["${Acct}:${Table}:${Table.Arn}", {"Acct": account}]}) == "111:t-name:arn:t"
    assert resolver.condition("IsNotProd") is True
    assert resolver.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert resolver.resolve({"Fn::GetAtt": ["Table", "Arn"]}) == "arn:t"
    assert resolver.resolve({"Fn::Join": ["-", ["a", {"Ref": "AWS::Partition"}, {"Ref": "AWS::URLSuffix"}]]}) == (
        "a-aws-amazonaws.com"
    )
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"


def test_find_in_map_falls_back_to_its_default_value_as_language_extensions_do() -> None:
    resolver = Resolver(load_yaml("Mappings: {Accounts: {us-east-1: {Id: '111'}}}"), {})

    mapped = {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::Region"}, "Id", {"DefaultValue": "none"}]}
    unmapped = {"Fn::FindInMap": ["Accounts", "eu-south-2", "Id", {"DefaultValue": "none"}]}

    assert (resolver.resolve(mapped), resolver.resolve(unmapped)) == ("111", "none")
    with pytest.raises(TemplateError, match="no Accounts/eu-south-2/Id"):
        resolver.resolve({"Fn::FindInMap": ["Accounts", "eu-south-2", "Id"]})


def test_no_value_removes_the_property_or_list_item() -> None:
    document = load_yaml("Conditions: {Never: !Equals [a, b]}")
    resolver = Resolver(document, {})

    resolved = resolver.resolve({"Keep": 1, "Drop": {"Fn::If": ["Never", 2, {"Ref": "AWS::NoValue"}]}})
    items = resolver.resolve(["a", {"Fn::If": ["Never", "b", {"Ref": "AWS::NoValue"}]}])

    assert (resolved, items) == ({"Keep": 1}, ["a"])


def test_parameter_overrides_win_over_defaults_and_unknown_ones_are_refused() -> None:
    document = load_yaml("Parameters: {LogLevel: {Type: String, Default: INFO}}")

    assert Resolver(document, {}, {"LogLevel": "DEBUG"}).resolve({"Ref": "LogLevel"}) == "DEBUG"
    with pytest.raises(TemplateError, match="Nope"):
        Resolver(document, {}, {"Nope": "x"})


def test_a_reference_to_something_that_does_not_exist_locally_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="Missing"):
        Resolver({}, {}).resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="not supported"):
        Resolver({}, {}).resolve({"Fn::ImportValue": "shared-export"})


def test_globals_merge_like_sam_maps_merge_lists_add_up_and_the_function_wins() -> None:
    merged = merge_globals(
        {"Timeout": 10, "Layers": ["global"], "Environment": {"Variables": {"A": "global", "B": "global"}}},
        {"Timeout": 3, "Layers": ["own"], "Environment": {"Variables": {"B": "own"}}},
    )

    assert merged == {
        "Timeout": 3,
        "Layers": ["global", "own"],
        "Environment": {"Variables": {"A": "global", "B": "own"}},
    }


def test_dependencies_follow_ref_getatt_and_sub_but_not_parameters_of_sub() -> None:
    sub_with_own_variable = {"Fn::Sub": ["${Table}-${Local}", {"Local": "x"}]}

    found = dependencies({"A": {"Ref": "Queue"}, "B": {"Fn::GetAtt": ["Dlq", "Arn"]}, "C": sub_with_own_variable})

    assert found == {"Queue", "Dlq", "Table"}


def test_every_http_route_of_template_yaml_is_found_with_its_function_and_authorizer(template: Template) -> None:
    routes = {route.route_key: route for route in template.http_routes()}

    assert routes["POST /v1/users"].function_id == "RegisterFunction"
    assert routes["POST /v1/login"].function_id == "LoginFunction"
    assert routes["POST /v1/token/refresh"].function_id == "RefreshTokenFunction"
    assert routes["POST /v1/logout"].function_id == "LogoutFunction"
    for route_key, route in routes.items():
        expected = None if route_key in OPEN_ROUTES else "AccessTokenAuthorizer"
        if route.path.startswith(("/v1/server/", "/v1/moderation/")):
            expected = "AWS_IAM"  # game servers and operators sign with IAM (DESIGN.md §3, fair play)
        assert route.authorizer == expected, route_key


def test_the_authorizer_of_template_yaml_is_read_as_api_gateway_configures_it(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    authorizer = template.http_authorizers(identities)["AccessTokenAuthorizer"]

    assert authorizer.function_id == "AuthorizeFunction"
    assert (authorizer.payload_format, authorizer.simple_responses) == ("2.0", True)
    assert authorizer.identity_headers == ("Authorization",)
    assert authorizer.ttl_seconds == 240 == auth.AUTHORIZER_CACHE_SECONDS  # the documented access-token window's


def test_the_login_function_gets_globals_and_its_own_environment_with_intrinsics_resolved(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    login = template.function("LoginFunction", identities)

    assert login.environment["USERS_TABLE"] == "leaderboard-local-UsersTable"
    assert login.environment["TOKEN_FAMILIES_TABLE"] == "leaderboard-local-TokenFamiliesTable"
    assert login.environment["RATE_LIMITS_TABLE"] == "leaderboard-local-RateLimitsTable"
    assert login.environment["SIGNING_KEY_SECRET_ARN"] == SECRET_ARN
    assert login.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert login.environment["JWT_ISSUER"] == "urn:leaderboard:leaderboard-local"
    assert (login.code_dir, login.handler) == (PROJECT_ROOT / "functions" / "login", "login.lambda_handler")
    # The shared layer goes on sys.path; the Secrets extension's layer ARN is emulated, not loaded.
    assert login.layer_dirs == (PROJECT_ROOT / "layers" / "common",)
    assert (login.memory_mb, login.timeout_seconds) == (512, 10)
    assert login.arn == "arn:aws:lambda:us-east-1:123456789012:function:leaderboard-local-LoginFunction"


def test_the_extension_layer_arn_of_template_yaml_resolves_through_its_mapping(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    layers = template.resolver(identities).resolve(template.function_properties("LoginFunction")["Layers"])

    # Release 1.0.103 of the extension is layer version 4 in us-east-1 (the mapping holds each region's number).
    assert layers[-1] == (
        "arn:aws:lambda:us-east-1:177933569100:layer:AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:4"
    )


def test_an_unknown_function_is_refused(template: Template, identities: dict[str, ResourceIdentity]) -> None:
    with pytest.raises(TemplateError, match="NoSuchFunction"):
        template.function("NoSuchFunction", identities)


def test_a_resource_whose_condition_is_false_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        """
        Conditions: {Never: !Equals [a, b]}
        Resources:
          Kept: {Type: AWS::DynamoDB::Table, Properties: {}}
          Skipped: {Type: AWS::DynamoDB::Table, Condition: Never, Properties: {}}
        """
    )

    assert list(Template(path).resources) == ["Kept"]


# --- Queues, SQS event sources and placeholders ---

QUEUE_URL = "http://127.0.0.1:5000/123456789012/leaderboard-local-ScoresQueue"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:leaderboard-local-ScoresDeadLetterQueue"


def queue_identity(logical_id: str) -> ResourceIdentity:
    """What the queue provisioner returns: the URL for Ref, and Arn, QueueName, QueueUrl."""
    name = f"leaderboard-local-{logical_id}"
    url = f"http://127.0.0.1:5000/123456789012/{name}"
    return ResourceIdentity(
        url, {"Arn": f"arn:aws:sqs:us-east-1:123456789012:{name}", "QueueName": name, "QueueUrl": url}
    )


@pytest.fixture(scope="module")
def with_queues(identities: dict[str, ResourceIdentity], template: Template) -> dict[str, ResourceIdentity]:
    queues = template.resources_of_type("AWS::SQS::Queue")
    return identities | {logical_id: queue_identity(logical_id) for logical_id in queues}


def test_the_scores_queue_of_template_yaml_feeds_the_consumer_as_the_event_source_mapping_says(
    template: Template, with_queues: dict[str, ResourceIdentity]
) -> None:
    sources = {source.function_id: source for source in template.sqs_event_sources(with_queues)}
    source = sources["ApplyScoresFunction"]

    assert set(sources) == {"ApplyScoresFunction", "PublishBoardFunction", "PublishEventsFunction"}
    assert source.event_name == "ScoresQueueMapping"  # an AWS::Lambda::EventSourceMapping, not a SAM SQS event
    assert (source.batch_size, source.batching_window_seconds) == (10, 0)
    assert source.report_batch_item_failures is True
    assert (source.enabled, source.maximum_concurrency) == (True, 5)  # ScoresConsumerMaxConcurrency's default
    assert source.queue.logical_id == "ScoresQueue"
    assert source.queue.url == QUEUE_URL
    assert source.queue.visibility_timeout_seconds == 60
    assert (source.queue.dead_letter_arn, source.queue.max_receive_count) == (DLQ_ARN, 5)
    assert source.queue.fifo is False


def test_template_yaml_queues_and_their_urls_reach_the_functions(
    template: Template, with_queues: dict[str, ResourceIdentity]
) -> None:
    queues = {queue.logical_id: queue for queue in template.queues(with_queues)}
    post_score = template.function("PostScoreFunction", with_queues)

    assert set(queues) == {"ScoresQueue", "ScoresDeadLetterQueue", "BoardChangesQueue", "LiveEventsQueue"}
    assert queues["ScoresDeadLetterQueue"].dead_letter_arn is None
    assert queues["ScoresDeadLetterQueue"].visibility_timeout_seconds == 30  # SQS's default
    assert post_score.environment["SCORES_QUEUE_URL"] == QUEUE_URL


def test_network_and_cache_resources_get_placeholders_so_the_vpc_functions_resolve(
    template: Template, identities: dict[str, ResourceIdentity], with_queues: dict[str, ResourceIdentity]
) -> None:
    resolver = template.resolver(identities)
    vpc_config = resolver.resolve(template.function_properties("ApplyScoresFunction")["VpcConfig"])
    endpoint = resolver.resolve(template.resources["DynamoDbEndpoint"]["Properties"])
    rebuild = template.function("RebuildBoardFunction", with_queues)

    assert [subnet.split("-")[0] for subnet in vpc_config["SubnetIds"]] == ["subnet", "subnet"]
    assert vpc_config["SubnetIds"][0] != vpc_config["SubnetIds"][1]
    assert vpc_config["SecurityGroupIds"][0].startswith("sg-")
    assert endpoint["VpcId"] == identities["Vpc"].ref
    assert endpoint["VpcId"].startswith("vpc-")
    assert identities["FunctionSecurityGroup"] == template.default_identities()["FunctionSecurityGroup"]  # stable
    # Until the runtime points the cache at its Redis (and sets REDIS_URL itself), the endpoint resolves nowhere.
    assert rebuild.environment["REDIS_URL"] == "rediss://leaderboard-local-boardcache.cache.invalid:6379/0"
    assert json.loads(rebuild.environment["GAME"])["boards"][0]["id"] == "global"  # the game, from Globals
    assert rebuild.timeout_seconds == 900


def event_source_template(tmp_path: Path, event_properties: str, queue_properties: str = "{}") -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(
        f"""
        Resources:
          Work:
            Type: AWS::SQS::Queue
            Properties: {queue_properties}
          Consumer:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: code/
              Handler: app.handler
              Runtime: python3.13
              Events:
                Work: {{Type: SQS, Properties: {event_properties}}}
        """
    )
    return Template(path)


def identities_of(template: Template, *, fifo: bool = False) -> dict[str, ResourceIdentity]:
    name = "leaderboard-local-Work" + (".fifo" if fifo else "")
    arn = f"arn:aws:sqs:us-east-1:123456789012:{name}"
    return template.default_identities() | {
        "Work": ResourceIdentity(f"http://q/{name}", {"Arn": arn, "QueueName": name})
    }


def test_an_sqs_event_gets_lambdas_defaults(tmp_path: Path) -> None:
    template = event_source_template(tmp_path, "{Queue: !GetAtt Work.Arn}")

    (source,) = template.sqs_event_sources(identities_of(template))

    assert (source.batch_size, source.batching_window_seconds, source.report_batch_item_failures) == (10, 0, False)
    assert (source.queue.visibility_timeout_seconds, source.queue.dead_letter_arn) == (30, None)


def test_an_sqs_event_reads_enabled_scaling_and_a_redrive_policy_given_as_json_text(tmp_path: Path) -> None:
    template = event_source_template(
        tmp_path,
        "{Queue: !GetAtt Work.Arn, BatchSize: 100, MaximumBatchingWindowInSeconds: 5, Enabled: false,"
        " ScalingConfig: {MaximumConcurrency: 2}}",
        """{VisibilityTimeout: "7", RedrivePolicy: '{"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": "3"}'}""",
    )

    (source,) = template.sqs_event_sources(identities_of(template))

    assert (source.batch_size, source.batching_window_seconds) == (100, 5)
    assert (source.enabled, source.maximum_concurrency) == (False, 2)
    assert (source.queue.visibility_timeout_seconds, source.queue.max_receive_count) == (7, 3)
    assert source.queue.dead_letter_arn == "arn:dlq"


def test_an_event_source_mapping_written_out_feeds_its_function_like_an_sqs_event(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        """
        Resources:
          Work: {Type: AWS::SQS::Queue}
          Consumer: {Type: AWS::Serverless::Function, Properties: {CodeUri: code/, Handler: app.handler}}
          WorkMapping:
            Type: AWS::Lambda::EventSourceMapping
            Properties:
              FunctionName: !GetAtt Consumer.Arn
              EventSourceArn: !GetAtt Work.Arn
              BatchSize: 5
              FunctionResponseTypes: [ReportBatchItemFailures]
              ScalingConfig: {MaximumConcurrency: 3}
          StreamMapping:
            Type: AWS::Lambda::EventSourceMapping
            Properties: {FunctionName: !Ref Consumer, EventSourceArn: arn:aws:kinesis:us-east-1:123456789012:stream/s}
        """
    )
    template = Template(path)

    (source,) = template.sqs_event_sources(identities_of(template))

    assert (source.function_id, source.event_name, source.queue.logical_id) == ("Consumer", "WorkMapping", "Work")
    assert (source.batch_size, source.report_batch_item_failures, source.maximum_concurrency) == (5, True, 3)


@pytest.mark.parametrize(
    ("event_properties", "queue_properties", "message"),
    [
        ("{Queue: arn:aws:sqs:us-east-1:123456789012:elsewhere}", "{}", "not a queue of this template"),
        ("{Queue: !GetAtt Work.Arn, BatchSize: 11}", "{}", "needs MaximumBatchingWindowInSeconds"),
        ("{Queue: !GetAtt Work.Arn, BatchSize: 0}", "{}", "BatchSize must be between 1 and 10000"),
        ("{Queue: !GetAtt Work.Arn, BatchSize: 20, MaximumBatchingWindowInSeconds: 1}", "{FifoQueue: true}", "and 10"),
        ("{Queue: !GetAtt Work.Arn, MaximumBatchingWindowInSeconds: 301}", "{}", "between 0 and 300"),
        ("{Queue: !GetAtt Work.Arn, FunctionResponseTypes: [Nope]}", "{}", "only ReportBatchItemFailures"),
        ("{Queue: !GetAtt Work.Arn, FilterCriteria: {Filters: []}}", "{}", "FilterCriteria is not supported"),
        ("{Queue: !GetAtt Work.Arn}", "{RedrivePolicy: {maxReceiveCount: 3}}", "needs deadLetterTargetArn"),
    ],
)
def test_an_sqs_event_lambda_would_refuse_is_a_clear_error(
    tmp_path: Path, event_properties: str, queue_properties: str, message: str
) -> None:
    template = event_source_template(tmp_path, event_properties, queue_properties)
    fifo = "FifoQueue" in queue_properties

    with pytest.raises(TemplateError, match=message):
        template.sqs_event_sources(identities_of(template, fifo=fifo))


# --- Schedule events ---


def test_the_schedules_of_template_yaml_are_the_eventbridge_rules_sam_would_create(
    template: Template, with_queues: dict[str, ResourceIdentity]
) -> None:
    rules = {rule.event_name: rule for rule in template.schedule_rules(with_queues)}

    assert set(rules) == {"SafetyNet", "AfterReset", "RestoreIfLost"}
    safety_net, after_reset, restore = rules["SafetyNet"], rules["AfterReset"], rules["RestoreIfLost"]
    assert safety_net.function_id == "PublishBoardFunction"
    assert safety_net.schedule == RateSchedule("rate(1 minute)", timedelta(minutes=1))
    assert after_reset.function_id == "RollOverSeasonsFunction"
    assert after_reset.schedule == RateSchedule("rate(15 minutes)", timedelta(minutes=15))
    assert restore.function_id == "RebuildBoardFunction"
    assert restore.schedule == RateSchedule("rate(1 minute)", timedelta(minutes=1))
    # Named as CloudFormation names SAM's rule (logical id <Function><Event>), like the sample event's.
    assert safety_net.name == "leaderboard-local-PublishBoardFunctionSafetyNet"
    assert safety_net.arn == f"arn:aws:events:us-east-1:123456789012:rule/{safety_net.name}"
    assert all(rule.enabled for rule in rules.values())
    assert safety_net.input is after_reset.input is None
    assert json.loads(str(restore.input)) == load_event("rebuild_board_if_lost")  # the sample event is the rule's


def schedule_template(tmp_path: Path, *events: str) -> Template:
    path = tmp_path / "template.yaml"
    lines = "\n".join(
        f"                E{number}: {{Type: Schedule, Properties: {event}}}" for number, event in enumerate(events)
    )
    path.write_text(
        f"""
        Parameters:
          Every: {{Type: String, Default: "rate(5 minutes)"}}
        Resources:
          Job:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: code/
              Handler: app.handler
              Runtime: python3.13
              Events:
{lines}
        """
    )
    return Template(path)


def test_a_schedule_reads_cron_name_enabled_state_and_input(tmp_path: Path) -> None:
    template = schedule_template(
        tmp_path,
        "{Schedule: !Ref Every}",
        "{Schedule: 'cron(0 12 ? * MON-FRI *)', Name: noon, Enabled: false}",
        "{Schedule: rate(1 hour), State: DISABLED}",
        '{Schedule: rate(1 day), State: ENABLED, Input: \'{"board": "weekly"}\'}',
        "{Schedule: rate(1 day), Enabled: 'true'}",
    )

    rules = template.schedule_rules(template.default_identities())

    assert [rule.schedule.expression for rule in rules] == [
        "rate(5 minutes)",
        "cron(0 12 ? * MON-FRI *)",
        "rate(1 hour)",
        "rate(1 day)",
        "rate(1 day)",
    ]
    assert isinstance(rules[1].schedule, CronSchedule)
    assert [rule.enabled for rule in rules] == [True, False, False, True, True]
    assert rules[0].name == "leaderboard-local-JobE0"
    assert rules[1].arn == "arn:aws:events:us-east-1:123456789012:rule/noon"
    assert [rule.input for rule in rules] == [None, None, None, '{"board": "weekly"}', None]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{Schedule: rate(5 minute)}", "Job.E0: 'rate\\(5 minute\\)': the unit is singular for 1 and plural"),
        ("{Schedule: 'cron(0 12 * * * *)'}", "Job.E0: .* one of Day-of-month and Day-of-week must be"),
        ("{Description: no schedule}", "Job.E0: '' is neither rate"),
        ("{Schedule: rate(1 day), Enabled: false, State: DISABLED}", "Enabled or State, not both"),
        ("{Schedule: rate(1 day), State: PAUSED}", "State must be one of ENABLED, DISABLED"),
        ("{Schedule: rate(1 day), Input: not json}", "Input must be JSON text"),
    ],
)
def test_a_schedule_eventbridge_would_refuse_is_a_clear_error(tmp_path: Path, event: str, message: str) -> None:
    template = schedule_template(tmp_path, event)

    with pytest.raises(TemplateError, match=message):
        template.schedule_rules(template.default_identities())


# --- AppSync Events ---


def test_the_event_api_of_template_yaml_has_ids_shaped_like_appsyncs_and_its_parts_are_named_under_its_arn(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    api = identities["LiveApi"]
    api_id = api.attributes["ApiId"]

    assert re.fullmatch(r"[a-z0-9]{26}", api_id)
    assert api.ref == api.attributes["ApiArn"] == f"arn:aws:appsync:us-east-1:123456789012:apis/{api_id}"
    assert api.attributes["Dns.Http"] == f"{api_id}.appsync-api.us-east-1.amazonaws.com"
    assert api.attributes["Dns.Realtime"] == f"{api_id}.appsync-realtime-api.us-east-1.amazonaws.com"
    assert identities["BoardsNamespace"].attributes["ChannelNamespaceArn"] == f"{api.ref}/channelNamespace/boards"
    data_source = identities["SubscriptionsDataSource"].attributes
    assert (data_source["DataSourceArn"], data_source["Name"]) == (
        f"{api.ref}/datasources/subscriptions",
        "subscriptions",
    )
    role = identities["SubscriptionsDataSourceRole"].attributes
    assert role["Arn"] == "arn:aws:iam::123456789012:role/leaderboard-local-SubscriptionsDataSourceRole"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", role["RoleId"])
    assert identities["AuthorizeLiveInvokePermission"].ref.startswith("permission-")
    assert template.default_identities()["LiveApi"] == api  # stable across runs


def test_dns_attributes_resolve_through_getatt_and_sub_so_the_publisher_gets_the_apis_url(
    template: Template, identities: dict[str, ResourceIdentity], with_queues: dict[str, ResourceIdentity]
) -> None:
    http_domain = identities["LiveApi"].attributes["Dns.Http"]
    resolver = template.resolver(identities)
    publisher = template.function("PublishEventsFunction", with_queues)

    assert resolver.resolve(load_yaml("!GetAtt LiveApi.Dns.Http")) == http_domain
    assert resolver.resolve(load_yaml("!Sub wss://${LiveApi.Dns.Realtime}/event/realtime")).endswith(
        ".appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
    )
    assert publisher.environment["EVENT_API_URL"] == f"https://{http_domain}/event"


def test_the_event_api_of_template_yaml_is_read_with_its_auth_modes_namespaces_and_handlers(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    api = template.event_api(identities)

    assert api is not None
    assert (api.logical_id, api.name, api.api_id) == ("LiveApi", "leaderboard-prod-live", api.api_id)  # Stage's default
    assert api.http_url == f"https://{identities['LiveApi'].attributes['Dns.Http']}/event"
    assert (api.auth_types, api.connection_auth) == (("AWS_LAMBDA", "AWS_IAM"), ("AWS_LAMBDA",))
    assert api.authorizer == EventAuthorizer("AuthorizeLiveFunction", ttl_seconds=240)
    on_subscribe = ChannelHandler("OnSubscribeFunction", "subscriptions", "REQUEST_RESPONSE")
    assert api.namespaces == {
        name: ChannelNamespaceSpec(name, ("AWS_IAM",), ("AWS_LAMBDA",), on_subscribe=on_subscribe)
        for name in ("boards", "players")
    }


EVENT_API = """
Resources:
  Api:
    Type: AWS::AppSync::Api
    Properties:
      Name: live
      EventConfig:
        AuthProviders:
          - AuthType: AWS_LAMBDA
            LambdaAuthorizerConfig:
              AuthorizerUri: !Sub "${Authorize.Arn}:live"
              IdentityValidationExpression: "^Bearer .+$"
          - {AuthType: AWS_IAM}
        ConnectionAuthModes: [{AuthType: AWS_LAMBDA}]
        DefaultPublishAuthModes: [{AuthType: AWS_IAM}]
        DefaultSubscribeAuthModes: [{AuthType: AWS_LAMBDA}]
  Space:
    Type: AWS::AppSync::ChannelNamespace
    Properties:
      ApiId: !GetAtt Api.ApiId
      Name: space
      PublishAuthModes: [{AuthType: AWS_LAMBDA}, {AuthType: AWS_IAM}]
      HandlerConfigs:
        OnPublish:
          Behavior: DIRECT
          Integration: {DataSourceName: handlers, LambdaConfig: {InvokeType: EVENT}}
  Handlers:
    Type: AWS::AppSync::DataSource
    Properties:
      ApiId: !GetAtt Api.ApiId
      Name: handlers
      Type: AWS_LAMBDA
      LambdaConfig: {LambdaFunctionArn: !GetAtt Handle.Arn}
  Authorize: {Type: AWS::Serverless::Function, Properties: {CodeUri: code/, Handler: app.authorize, Runtime: python3}}
  Handle: {Type: AWS::Serverless::Function, Properties: {CodeUri: code/, Handler: app.handle, Runtime: python3}}
"""


def event_api_template(tmp_path: Path, *replacements: tuple[str, str]) -> Template:
    text = EVENT_API
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return Template(path)


def test_a_namespace_overrides_the_apis_default_modes_and_a_handler_may_be_invoked_asynchronously(
    tmp_path: Path,
) -> None:
    template = event_api_template(tmp_path)

    api = template.event_api(template.default_identities())

    assert api is not None
    assert api.authorizer == EventAuthorizer("Authorize", 0, "^Bearer .+$")  # an alias ARN names the function too
    space = api.namespaces["space"]
    assert (space.publish_auth, space.subscribe_auth) == (("AWS_LAMBDA", "AWS_IAM"), ("AWS_LAMBDA",))
    assert (space.on_publish, space.on_subscribe) == (ChannelHandler("Handle", "handlers", "EVENT"), None)
    assert space.on_publish.waits is False


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (
            ("- {AuthType: AWS_IAM}", "- {AuthType: AMAZON_COGNITO_USER_POOLS}"),
            "AMAZON_COGNITO_USER_POOLS is not served",
        ),
        (("- {AuthType: AWS_IAM}", "- {AuthType: OPENID_CONNECT}"), "OPENID_CONNECT is not served"),
        (("- {AuthType: AWS_IAM}", "- {AuthType: API_KEY}"), "API_KEY is not served"),
        (
            ("DefaultPublishAuthModes: [{AuthType: AWS_IAM}]", "DefaultPublishAuthModes: [{AuthType: API_KEY}]"),
            "not in",
        ),
        (("ConnectionAuthModes: [{AuthType: AWS_LAMBDA}]", "ConnectionAuthModes: []"), "names no auth mode"),
        (("Behavior: DIRECT", "Behavior: CODE"), "APPSYNC_JS"),
        (("Name: space", "Name: space\n      CodeHandlers: 'export function onPublish() {}'"), "not emulated"),
        (("DataSourceName: handlers", "DataSourceName: nowhere"), "not a data source of this API"),
        (("handlers\n      Type: AWS_LAMBDA", "handlers\n      Type: NONE"), "need an AWS_LAMBDA data source"),
        (("InvokeType: EVENT", "InvokeType: LATER"), "REQUEST_RESPONSE or EVENT"),
        (('!Sub "${Authorize.Arn}:live"', "arn:aws:lambda:us-east-1:1:function:elsewhere"), "not a function of this"),
        (('IdentityValidationExpression: "^Bearer .+$"', "AuthorizerResultTtlInSeconds: 3601"), "between 0 and 3600"),
        (('IdentityValidationExpression: "^Bearer .+$"', "IdentityValidationExpression: '('"), "not a regular"),
        (("Name: space", "Name: -space"), "not a valid channel namespace name"),
    ],
)
def test_what_the_local_event_api_cannot_serve_as_appsync_would_is_a_template_error(
    tmp_path: Path, replacement: tuple[str, str], message: str
) -> None:
    template = event_api_template(tmp_path, replacement)

    with pytest.raises(TemplateError, match=message):
        template.event_api(template.default_identities())


def test_one_event_api_is_served_and_a_template_without_one_has_none(tmp_path: Path) -> None:
    second = "  Other:\n    Type: AWS::AppSync::Api\n    Properties: {Name: other, EventConfig: {}}\n"
    two = event_api_template(tmp_path, ("  Space:\n", second + "  Space:\n"))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "template.yaml").write_text("Resources:\n  Table: {Type: AWS::DynamoDB::Table}\n")
    none = Template(tmp_path / "none" / "template.yaml")

    with pytest.raises(TemplateError, match="one Event API, not Api, Other"):
        two.event_api(two.default_identities())
    assert none.event_api(none.default_identities()) is None


def test_a_change_is_dropped_only_once_no_write_of_its_request_can_still_land(
    template: Template, with_queues: dict[str, ResourceIdentity]
) -> None:
    # The consumer drops a change whose write has not landed after UNWRITTEN_AFTER_MS: a write cannot land after its
    # function's timeout, so the template's timeouts of the functions that send changes must stay well within it.
    for logical_id in ("PostScoreFunction", "PostServerScoreFunction"):
        function = template.function(logical_id, with_queues)
        assert function.timeout_seconds * 1000 * 3 <= scores.UNWRITTEN_AFTER_MS, logical_id
