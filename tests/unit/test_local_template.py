"""The local runtime's template reader: short tags, intrinsics, Globals, and what it reads from template.yaml."""

from pathlib import Path

import pytest

from local.template import (
    Resolver,
    ResourceIdentity,
    Template,
    TemplateError,
    dependencies,
    load_yaml,
    merge_globals,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Routes that need no token (DESIGN.md, security baseline); every other HTTP route has the authorizer.
OPEN_ROUTES = {
    "POST /v1/users",
    "POST /v1/login",
    "POST /v1/token/refresh",
    "GET /v1/scores",
    "GET /v1/scores/{user_id}",
}
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
        assert route.authorizer == expected, route_key


def test_the_authorizer_of_template_yaml_is_read_as_api_gateway_configures_it(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    authorizer = template.http_authorizers(identities)["AccessTokenAuthorizer"]

    assert authorizer.function_id == "AuthorizeFunction"
    assert (authorizer.payload_format, authorizer.simple_responses) == ("2.0", True)
    assert authorizer.identity_headers == ("Authorization",)
    assert authorizer.ttl_seconds == 240


def test_the_login_function_gets_globals_and_its_own_environment_with_intrinsics_resolved(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    login = template.function("LoginFunction", identities)

    assert login.environment["USERS_TABLE"] == "leaderboard-local-UsersTable"
    assert login.environment["TOKEN_FAMILIES_TABLE"] == "leaderboard-local-TokenFamiliesTable"
    assert login.environment["LOGIN_ATTEMPTS_TABLE"] == "leaderboard-local-LoginAttemptsTable"
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

    assert layers[-1] == (
        "arn:aws:lambda:us-east-1:177933569100:layer:AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:12"
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

    assert set(sources) == {"ApplyScoresFunction", "PublishBoardFunction", "PostToConnectionsFunction"}
    assert source.event_name == "Scores"
    assert (source.batch_size, source.batching_window_seconds) == (10, 0)
    assert source.report_batch_item_failures is True
    assert (source.enabled, source.maximum_concurrency) == (True, None)
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

    assert set(queues) == {"ScoresQueue", "ScoresDeadLetterQueue", "BoardChangesQueue", "FanoutQueue"}
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
    assert rebuild.environment["BOARD_KEY"] == "global"
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
