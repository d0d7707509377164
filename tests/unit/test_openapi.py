"""openapi.yaml and asyncapi.yaml say what the code does: the routes and their auth as template.yaml declares them,
the request schemas as the pydantic models derive them, the statuses the handlers and the code they call can answer,
the bodies the layer builds, the live feed's channels and messages. Nothing runs against AWS: the code is read (its
syntax tree) or called where it is pure. Each failure says what drifted and what the document should say.
"""

import ast
import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from leaderboard import bodies, http, messages, problems, scores, seasons, standings
from leaderboard.actions import Action
from leaderboard.auth import Session
from leaderboard.board import TOP, RankChange, Snapshot, Standing
from leaderboard.game import _ID as BOARD_ID
from leaderboard.game import ALL_TIME_BOARD, ActionType, BoardDefinition
from leaderboard.moderation import Decision
from leaderboard.problems import Problem
from leaderboard.scores import AcceptedScore
from leaderboard.users import User
from local.event_api import PROTOCOL as EVENT_API_PROTOCOL
from local.specs import AWS_IAM
from local.template import Template

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.yaml"
ASYNCAPI = ROOT / "asyncapi.yaml"
PROBLEM_JSON = "application/problem+json"
GATEWAY_JSON = "application/json"  # API Gateway's own answers: {"message": "..."}


# --- The routes, as the template declares them and the handlers implement them -----------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    authorizer: str | None  # a Lambda authorizer's name, AWS_IAM, or None (open)
    handler: str  # e.g. functions.login.register

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@cache
def _template() -> Template:
    return Template(ROOT / "template.yaml")


@cache
def _routes() -> tuple[Route, ...]:
    template = _template()
    routes = []
    for route in template.http_routes():
        properties = template.function_properties(route.function_id)
        module = str(properties["Handler"]).rsplit(".", 1)[0]
        package = ".".join(Path(str(properties["CodeUri"])).parts)
        routes.append(Route(route.method, route.path, route.authorizer, f"{package}.{module}"))
    return tuple(routes)


ROUTES = _routes()


@cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
    return document


@cache
def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def _pointer(document: dict[str, Any], ref: str) -> Any:
    """What a local `$ref` ("#/a/b") points at in `document`; KeyError if nothing."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _resolved(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _pointer(document, node["$ref"])
    return node


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = _openapi()["paths"][route.path][route.method.lower()]
    return operation


def _validator(document: dict[str, Any], ref: str) -> OAS31Validator:
    # The components ride along in the root, so the schemas' own "#/components/..." references resolve.
    return OAS31Validator({"components": document["components"], "$ref": ref})


# --- Reading a handler and the code it calls ----------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """The source of one of the project's modules (the handlers' and the layer's); None for anything else."""
    parts = module.split(".")
    base = {"leaderboard": ROOT / "layers" / "common", "functions": ROOT}.get(parts[0])
    if base is None:
        return None
    path = base.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


Definition = ast.FunctionDef | ast.ClassDef


@dataclass(frozen=True)
class _Module:
    name: str
    tree: ast.Module
    imports: dict[str, tuple[str, str | None]]  # a local name -> (module, attribute), or (module, None) for a module
    definitions: dict[str, Definition]


@cache
def _module(name: str) -> _Module:
    path = _module_file(name)
    assert path is not None, f"{name} is not one of the project's modules"
    tree = ast.parse(path.read_text())
    imports: dict[str, tuple[str, str | None]] = {}
    definitions: dict[str, Definition] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                submodule = _module_file(f"{node.module}.{alias.name}")
                is_module = submodule is not None and submodule.exists()
                imports[alias.asname or alias.name] = (
                    (f"{node.module}.{alias.name}", None) if is_module else (node.module, alias.name)
                )
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            definitions[node.name] = node
    return _Module(name, tree, imports, definitions)


def _target(module: _Module, expression: ast.expr) -> tuple[str, str] | None:
    """What a called name refers to: (module, name) for `f`, `module.f` or `Class.method` ("Class.method")."""
    if isinstance(expression, ast.Name):
        if expression.id in module.definitions:
            return module.name, expression.id
        source, attribute = module.imports.get(expression.id, ("", None))
        return (source, attribute) if attribute else None
    if isinstance(expression, ast.Attribute) and isinstance(expression.value, ast.Name):
        owner = expression.value.id
        source, attribute = module.imports.get(owner, ("", None))
        if source and attribute is None:
            return source, expression.attr
        if isinstance(module.definitions.get(owner), ast.ClassDef):
            return module.name, f"{owner}.{expression.attr}"
    return None


def _definition(module_name: str, name: str) -> Definition | tuple[str, str] | None:
    """The function or class `name` of a project module; (module, name) where that module only imports it."""
    if _module_file(module_name) is None:
        return None
    module = _module(module_name)
    head, _, method = name.partition(".")
    found = module.definitions.get(head)
    if found is None:
        source, attribute = module.imports.get(head, ("", None))
        return (source, attribute) if attribute and not method else None
    if method:
        if not isinstance(found, ast.ClassDef):
            return None
        return next((node for node in found.body if isinstance(node, ast.FunctionDef) and node.name == method), None)
    return found


def _problem_class(module_name: str, name: str) -> type[Problem] | None:
    found = getattr(importlib.import_module(module_name), name, None)
    return found if isinstance(found, type) and issubclass(found, Problem) else None


def answered_problems(handler: str) -> dict[int, set[str]]:
    """Every problem status the handler can answer, read from the code: each Problem class instantiated in the
    handler, its decorators (http.endpoint answers 500 and 503), or any function of the project's modules that it
    calls, directly or not (methods reached through an object are not followed). Status -> where."""
    found: dict[int, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(handler, "lambda_handler", handler)]  # what to read, and who calls it (for the failure's message)
    while todo:
        module_name, name, caller = todo.pop()
        if (module_name, name) in seen:
            continue
        seen.add((module_name, name))
        definition = _definition(module_name, name)
        if isinstance(definition, tuple):
            todo.append((*definition, caller))
            continue
        if isinstance(definition, ast.ClassDef):
            problem = _problem_class(module_name, name)
            if problem is not None:
                found.setdefault(problem.status, set()).add(f"{problem.__name__} in {caller}")
            continue
        if definition is None:
            continue
        module = _module(module_name)
        here = f"{module_name}.{name}"
        decorators = [id(decorator) for decorator in definition.decorator_list]
        for node in ast.walk(definition):  # its decorators included
            called = node.func if isinstance(node, ast.Call) else node if id(node) in decorators else None
            target = _target(module, called) if isinstance(called, ast.expr) else None
            if target:
                todo.append((*target, here))
    return found


def _calls(handler: str, function: str) -> Iterator[ast.Call]:
    """The handler module's calls of `function` (as `function(...)` or `module.function(...)`)."""
    for node in ast.walk(_module(handler).tree):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called == function:
                yield node


def success_statuses(handler: str) -> set[int]:
    """The statuses of the handler's `http.json_response(<status>, ...)` calls."""
    statuses = set()
    for call in _calls(handler, "json_response"):
        status = call.args[0]
        assert isinstance(status, ast.Constant), f"{handler}: json_response's status is not a literal"
        assert isinstance(status.value, int), f"{handler}: json_response's status is not a number"
        statuses.add(status.value)
    return statuses


def request_model(handler: str) -> type[BaseModel] | None:
    """The model of the handler's `http.parse_body(event, <Model>)`, if it takes a body."""
    models = set()
    for call in _calls(handler, "parse_body"):
        target = _target(_module(handler), call.args[1])
        assert target is not None, f"{handler}: parse_body's model is not a name"
        models.add(getattr(importlib.import_module(target[0]), target[1]))
    assert len(models) <= 1, f"{handler} parses its body with several models: {models}"
    return models.pop() if models else None


def query_parameters(handler: str) -> set[str]:
    """The names the handler's `standings.query(params, (<names>))` allows (none without that call)."""
    names: set[str] = set()
    for call in _calls(handler, "query"):
        allowed = call.args[1]
        assert isinstance(allowed, ast.Tuple), f"{handler}: query's allowed names are not a literal tuple"
        names |= {str(element.value) for element in allowed.elts if isinstance(element, ast.Constant)}
    return names


def gateway_statuses(route: Route) -> set[int]:
    """What API Gateway itself answers on this route, before or instead of the function ({"message": ...})."""
    statuses = {500, 503}  # the function failed; no answer within the integration timeout
    api = _template().resources_of_type("AWS::Serverless::HttpApi")
    if any(
        "ThrottlingRateLimit" in (props.get("Properties") or {}).get("DefaultRouteSettings", {})
        for props in api.values()
    ):
        statuses.add(429)  # every route has a throttle
    if route.authorizer == AWS_IAM:
        statuses.add(403)  # unsigned, badly signed, or not allowed execute-api:Invoke
    elif route.authorizer:
        statuses |= {401, 403}  # no token; a token the authorizer refused
    if request_model(route.handler):
        statuses.add(413)  # over 10 MB
    return statuses


# Problems the reading above finds that the route cannot answer, each with the reason (reviewed by hand). The test
# fails if one is no longer found, so the list cannot outlive its reason.
UNREACHABLE: dict[str, dict[int, str]] = {
    "GET /v1/scores": {
        400: "it calls season_standings with no season name, so never a malformed one",
        404: "it reads the `global` board, which every game must define (game.py)",
    },
    "GET /v1/scores/{user_id}": {400: "it calls season_standings with no season name, so never a malformed one"},
}


# --- (a) The documents are well formed ------------------------------------------------------------------------------


def test_openapi_yaml_is_valid_openapi_3_1() -> None:
    document = _openapi()

    validate_openapi(document)

    assert document["openapi"].startswith("3.1.")


def test_asyncapi_yaml_is_asyncapi_3_and_every_reference_in_it_resolves() -> None:
    document = _asyncapi()

    dangling = [ref for ref in _references(document) if not _resolves(document, ref)]

    assert document["asyncapi"].startswith("3.0.")
    assert {"info", "servers", "channels", "operations", "components"} <= set(document)
    assert not dangling, f"asyncapi.yaml: these $ref point at nothing: {dangling}"


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    try:
        _pointer(document, ref)
    except (KeyError, TypeError):
        return False
    return ref.startswith("#/")


# --- (b) The routes and their auth are the template's ---------------------------------------------------------------


def test_openapi_yaml_documents_exactly_the_routes_of_the_template() -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, item in _openapi()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    }
    declared = {route.key for route in ROUTES}

    assert documented == declared, (
        f"openapi.yaml lacks {sorted(declared - documented)} and documents routes the template has not: "
        f"{sorted(documented - declared)}"
    )


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_each_operation_requires_what_the_template_requires(route: Route) -> None:
    # Schemes are named as the template names its authorizers: AWS_IAM, or the HttpApi's Lambda authorizer.
    expected: list[dict[str, list[str]]] = [] if route.authorizer is None else [{route.authorizer: []}]

    assert _operation(route).get("security") == expected, (
        f"{route.key}: the template's auth is {route.authorizer or 'NONE'}; its security must be {expected}"
    )


def test_security_schemes_say_how_each_kind_of_authorizer_is_met() -> None:
    schemes = _openapi()["components"]["securitySchemes"]
    lambda_authorizers = {route.authorizer for route in ROUTES if route.authorizer not in (None, AWS_IAM)}

    for name in lambda_authorizers:  # the HttpApi's authorizer verifies an access token (a JWT) as a bearer token
        assert (schemes[name]["type"], schemes[name]["scheme"], schemes[name]["bearerFormat"]) == (
            "http",
            "bearer",
            "JWT",
        )
    assert schemes[AWS_IAM]["x-amazon-apigateway-authtype"] == "awsSigv4"  # how API Gateway exports IAM auth
    assert set(schemes) == lambda_authorizers | {AWS_IAM}


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_each_operation_is_named_for_its_handler(route: Route) -> None:
    # A reader goes from the document to the code by name (STYLE.md: the handler is found from the URL).
    assert _operation(route)["operationId"] == route.handler.rsplit(".", 1)[1]


# --- (c) Request bodies are the pydantic models' ----------------------------------------------------------------


_ANNOTATIONS = {"title", "description", "examples", "example"}


def _keywords(schema: Any) -> Any:
    """A schema's validation keywords: annotations (prose) dropped, `required` as a sorted list."""
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS or key.startswith("x-"):
            continue
        if key == "properties":
            kept[key] = {name: _keywords(field) for name, field in value.items()}
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            kept[key] = [_keywords(branch) for branch in value]
        elif key in ("items", "not", "additionalProperties"):
            kept[key] = _keywords(value)
        elif key == "required":
            kept[key] = sorted(value)
        else:
            kept[key] = value
    return kept


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_each_request_body_has_exactly_the_validation_of_its_pydantic_model(route: Route) -> None:
    # One source of truth: the models validate every request, so every validation keyword of the document is derived
    # from them here and compared whole; the document adds only prose. A generator writing the file would lose its
    # comments and descriptions for nothing: a failure prints the schema to paste instead.
    model = request_model(route.handler)
    body = _operation(route).get("requestBody")
    if model is None:
        assert body is None, f"{route.key}: its handler reads no body; openapi.yaml documents one"
        return
    assert body is not None, f"{route.key}: its handler parses a {model.__name__}; openapi.yaml documents no body"
    ref = f"#/components/schemas/{model.__name__}"
    assert list(body["content"]) == ["application/json"], f"{route.key}: the body is JSON only (415 otherwise)"
    assert body["content"]["application/json"]["schema"] == {"$ref": ref}
    # A model with no required field: the handler takes a missing body as the defaults (start_action.py).
    needed = any(field.is_required() for field in model.model_fields.values())
    assert body.get("required", False) == needed, f"{route.key}: the body's `required` must be {needed}"

    expected = _keywords(model.model_json_schema())
    documented = _keywords(_pointer(_openapi(), ref))

    assert documented == expected, (
        f"{route.key}: {ref} does not validate as {model.__name__} does (bodies.py). Its validation keywords must "
        f"be (descriptions may be added):\n{yaml.safe_dump({model.__name__: expected}, sort_keys=False)}"
    )


def test_the_idempotency_key_header_is_what_post_score_accepts() -> None:
    header = _resolved(_openapi(), _operation(_route("POST /v1/scores"))["parameters"][0])
    schema = header["schema"]
    pattern = re.compile(schema["pattern"])

    # scores._idempotency_receipt: 1 to MAX_IDEMPOTENCY_KEY characters, each printable ASCII.
    disagree = [hex(code) for code in range(0x300) if bool(pattern.fullmatch(chr(code))) != _printable_ascii(chr(code))]

    assert (header["name"], header["in"], header["required"]) == ("Idempotency-Key", "header", False)
    assert (schema["minLength"], schema["maxLength"]) == (1, scores.MAX_IDEMPOTENCY_KEY)
    assert not disagree, f"the header's pattern and post_score disagree on the characters {disagree}"


def _printable_ascii(text: str) -> bool:
    return text.isprintable() and text.isascii()


def _route(key: str) -> Route:
    return next(route for route in ROUTES if route.key == key)


# --- Path and query parameters are what the handlers accept ---------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_each_operation_documents_the_query_parameters_its_handler_takes(route: Route) -> None:
    parameters = [_resolved(_openapi(), parameter) for parameter in _operation(route).get("parameters", [])]
    documented = {parameter["name"] for parameter in parameters if parameter["in"] == "query"}

    # standings.query answers 400 for any other parameter; a handler that never calls it ignores them all.
    assert documented == query_parameters(route.handler)


def test_the_path_and_query_parameters_have_the_bounds_the_code_checks() -> None:
    parameters = {name: parameter["schema"] for name, parameter in _openapi()["components"]["parameters"].items()}

    assert parameters["Board"]["pattern"] == BOARD_ID.pattern  # game.py: a board's id
    # Anything else is no player: 404. The code matches whole strings (fullmatch); a JSON Schema pattern is anchored.
    assert parameters["UserId"]["pattern"] == f"^{standings._USER_ID.pattern}$"
    limit, offset = parameters["Limit"], parameters["Offset"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, standings.MAX_LIMIT, TOP)
    assert (offset["minimum"], offset["maximum"], offset["default"]) == (0, standings.MAX_OFFSET, 0)


@pytest.mark.parametrize(
    "name",
    ["all", "2026-12-01", "2026-W49", "2026-12", "2026-W5", "last-week", "2026", "2026-12-1", "ALL", "2026-w49", ""],
)
def test_the_season_parameter_pattern_admits_the_names_of_every_period(name: str) -> None:
    pattern = re.compile(_openapi()["components"]["parameters"]["Season"]["schema"]["pattern"])
    # By form only: a name of the right form but no real date (2026-02-30) is the code's 400 alone.
    of_some_period = any(form.fullmatch(name) for form in seasons._NAMES.values())

    assert bool(pattern.fullmatch(name)) == of_some_period


# --- (d) Every status a route can answer, and only those ------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_each_operation_documents_every_status_its_route_can_answer(route: Route) -> None:
    responses = _openapi()["paths"][route.path][route.method.lower()]["responses"]
    success = {int(status) for status in responses if int(status) < 400}
    by_media: dict[str, set[int]] = {PROBLEM_JSON: set(), GATEWAY_JSON: set()}
    for status, response in responses.items():
        content = _resolved(_openapi(), response).get("content", {})
        if int(status) >= 400:
            assert set(content) <= set(by_media), f"{route.key} {status}: errors are problem details or API Gateway's"
            for media in content:
                by_media[media].add(int(status))
    found = answered_problems(route.handler)
    unreachable = UNREACHABLE.get(route.key, {})
    stale = sorted(set(unreachable) - set(found))
    problems_answered = {status: where for status, where in found.items() if status not in unreachable}

    assert success == success_statuses(route.handler), (
        f"{route.key}: the handler answers {success_statuses(route.handler)}"
    )
    assert not stale, f"UNREACHABLE lists {stale} for {route.key}, which the code no longer answers: remove them"
    undocumented = {
        status: sorted(where) for status, where in problems_answered.items() if status not in by_media[PROBLEM_JSON]
    }
    unanswered = sorted(by_media[PROBLEM_JSON] - set(problems_answered))
    assert not undocumented, (
        f"{route.key}: the code answers these as {PROBLEM_JSON}, openapi.yaml does not: {undocumented}"
    )
    assert not unanswered, (
        f"{route.key}: openapi.yaml documents {unanswered} as {PROBLEM_JSON}, which nothing its handler calls answers "
        "(the reading follows calls of functions and of Class.method, not of an object's methods)"
    )
    assert by_media[GATEWAY_JSON] == gateway_statuses(route), (
        f"{route.key}: API Gateway itself can answer {sorted(gateway_statuses(route))} here; openapi.yaml lists "
        f"{sorted(by_media[GATEWAY_JSON])} as {GATEWAY_JSON}"
    )


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.key)
def test_throttled_and_unavailable_answers_document_retry_after(route: Route) -> None:
    responses = _operation(route)["responses"]
    for status in ("429", "503"):
        response = _resolved(_openapi(), responses[status])
        if PROBLEM_JSON in response["content"]:  # the functions' 429 and 503 always carry it (problems.py)
            assert "Retry-After" in response.get("headers", {}), f"{route.key} {status}: no Retry-After"


def _problem_classes() -> list[type[Problem]]:
    return [found for found in vars(problems).values() if isinstance(found, type) and issubclass(found, Problem)]


@pytest.mark.parametrize("problem", _problem_classes(), ids=lambda problem: problem.__name__)
def test_each_documented_problem_is_the_body_problems_py_builds(problem: type[Problem]) -> None:
    instance = problem("What went wrong.", retry_after=3) if problem is problems.TooManyRequests else problem("x")
    body = instance.body()
    schemas = set()
    for route in ROUTES:
        for status, reference in _operation(route)["responses"].items():
            content = _resolved(_openapi(), reference).get("content", {})
            if int(status) == problem.status and PROBLEM_JSON in content:
                schemas.add(content[PROBLEM_JSON]["schema"]["$ref"])
    assert schemas, f"no operation documents {problem.__name__} ({problem.status})"

    for ref in schemas:
        validator = _validator(_openapi(), ref)
        for field in ("type", "title", "status"):  # each pinned: another problem's body is refused
            assert not validator.is_valid(body | {field: "something else"}), f"{ref} does not pin {field!r}"
        errors = [error.message for error in validator.iter_errors(body)]
        assert not errors, f"{ref} refuses {problem.__name__}'s body {body}: {errors}"


def test_a_bad_body_is_answered_with_the_documented_field_errors() -> None:
    event = {"body": '{"user_id": "u", "score": 1.5}', "headers": {"content-type": "application/json"}}
    with pytest.raises(problems.InvalidRequest) as refused:
        http.parse_body(event, bodies.PostScoreBody)

    body = refused.value.body()

    assert body["errors"], "a field error lists its fields"
    assert _validator(_openapi(), "#/components/schemas/InvalidRequestProblem").is_valid(body)


# --- Success bodies: as the layer builds them ----------------------------------------------------------------------


NOW_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
MATCH = ActionType("match", max_score=1000, lifetime_seconds=600, min_duration_seconds=20)
STANDING = Standing(user_id="4f1c2a9e0b7d4c55a1e3b2c1d0e9f8a7", user_name="Ada Lovelace", rank=1, score=420)


def _built_bodies() -> dict[str, list[Any]]:
    """Per success schema of openapi.yaml, bodies as the layer's code builds them (pure code: no AWS)."""
    user_id = STANDING.user_id
    operator = "arn:aws:iam::123456789012:user/operator"
    removal = Decision("2026-12-01T00:00:00.000Z#a1b2c3", "remove_points", user_id, operator, "bot", NOW_MS)
    ban = Decision("2026-12-01T00:00:00.000Z#d4e5f6", "ban", user_id, operator, "bot", NOW_MS)
    boards = [
        BoardDefinition("global", "All time", ("match",), "sum", "none", 0),
        BoardDefinition("weekly", "This week", ("match",), "sum", "weekly", 28),
        BoardDefinition("daily-best", "Best match today", ("match",), "best", "daily", 7),
    ]
    return {
        "User": [User(user_id, "ada", "Ada Lovelace", "$argon2id$...").public()],
        "Session": [Session(user_id, "access.jwt.token", "refresh-token").body()],
        "LoginSession": [Session(user_id, "access.jwt.token", "refresh-token", device_token="device.jwt").body()],
        "Action": [Action.new(MATCH, NOW_MS, user_id).body()],
        "AcceptedScore": [AcceptedScore("match.19ad1c2e800.0123456789abcdef0123", user_id, 420, NOW_MS).body()],
        "Standing": [STANDING.body()],
        "BoardSummary": [board.body(NOW_MS) for board in boards],
        "ModerationDecision": [replace(removal, board="weekly", season="2026-W49", points=0).body(), ban.body()],
    }


@pytest.mark.parametrize("schema", sorted(_built_bodies()))
def test_each_success_body_the_layer_builds_fits_its_schema(schema: str) -> None:
    validator = _validator(_openapi(), f"#/components/schemas/{schema}")

    for body in _built_bodies()[schema]:
        errors = [error.message for error in validator.iter_errors(body)]
        assert not errors, f"openapi.yaml's {schema} refuses {body}: {errors}"


def test_the_largest_total_documented_is_the_one_scores_py_enforces() -> None:
    assert _openapi()["components"]["schemas"]["Standing"]["properties"]["score"]["maximum"] == scores.MAX_TOTAL


# --- The live feed (asyncapi.yaml) ----------------------------------------------------------------------------------


def test_the_live_feeds_channels_are_those_messages_py_publishes_on() -> None:
    channels = _asyncapi()["channels"]
    addresses = {channel["address"] for channel in channels.values()}
    # The code's own channel names, with placeholders for the ids.
    published = {
        messages.board_channel("{board}"),
        messages.player_channel("{user_id}", ALL_TIME_BOARD),
        messages.player_channel("{user_id}", "{board}"),
    }
    namespaces = {
        resource["Properties"]["Name"]
        for resource in _template().resources_of_type("AWS::AppSync::ChannelNamespace").values()
    }

    assert addresses == published
    for channel in channels.values():
        assert set(channel.get("parameters", {})) == set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert channel["address"].split("/")[1] in namespaces, f"{channel['address']}: no such namespace"


def test_the_live_feeds_messages_are_what_the_publisher_sends() -> None:
    document = _asyncapi()
    snapshot = Snapshot(seq=1_796_083_200_000_001, top_seq=2, published_top_seq=1, top=[STANDING], viewers=3.0)
    sent = {
        "/boards/{board}": [messages.top10_message("weekly", "2026-W49", snapshot)],
        "/players/{user_id}": [messages.rank_message(ALL_TIME_BOARD, "all", RankChange(STANDING, None), 7)],
        "/players/{user_id}/{board}": [messages.rank_message("weekly", "2026-W49", RankChange(STANDING, 3), 8)],
    }

    for channel in document["channels"].values():
        for message in channel["messages"].values():
            ref = _resolved(document, message)["payload"]["$ref"]
            validator = _validator(document, ref)
            for event in sent[channel["address"]]:
                errors = [error.message for error in validator.iter_errors(json.loads(event))]
                assert not errors, f"asyncapi.yaml's {ref} refuses {event}: {errors}"


def test_clients_can_never_publish_on_the_live_feed() -> None:
    # The document: the stack sends, nobody else does. The template: publishing takes IAM, which no client holds.
    actions = {operation["action"] for operation in _asyncapi()["operations"].values()}
    template = _template()
    (api,) = template.resources_of_type("AWS::AppSync::Api").values()
    modes = [api["Properties"]["EventConfig"]["DefaultPublishAuthModes"]] + [
        namespace["Properties"]["PublishAuthModes"]
        for namespace in template.resources_of_type("AWS::AppSync::ChannelNamespace").values()
        if "PublishAuthModes" in namespace["Properties"]
    ]

    assert actions == {"send"}
    assert all(mode == [{"AuthType": "AWS_IAM"}] for mode in modes)


def test_the_live_feeds_server_is_the_templates_realtime_url() -> None:
    server = _asyncapi()["servers"]["aws"]
    realtime_url = _template().document["Outputs"]["LiveRealtimeUrl"]["Value"]["Fn::Sub"]

    assert realtime_url == f"{server['protocol']}://${{LiveApi.Dns.Realtime}}{server['pathname']}"
    assert server["x-subprotocols"][0] == EVENT_API_PROTOCOL
