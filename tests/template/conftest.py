"""Fixtures over template.yaml as CloudFormation would deploy it. These tests need samtranslator, which comes with
aws-sam-cli in the tools venv: `make template` runs them there; the app's venv does not collect them."""

import importlib.util
from typing import Any

import pytest

from tests.template.stack import Stack

if importlib.util.find_spec("samtranslator") is None:
    collect_ignore_glob = ["test_*.py"]

EXISTING_CACHE = {
    "ExistingCacheEndpoint": "board.serverless.use1.cache.amazonaws.com:6379",
    "ExistingCacheName": "board",
    "ExistingCacheUserId": "leaderboard-functions",
    "ExistingSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "ExistingSecurityGroupIds": "sg-0123456789abcdef0",
}


@pytest.fixture(scope="session")
def raw() -> dict[str, Any]:
    """template.yaml as written (short tags in their long form)."""
    from tests.template import cloudformation

    return cloudformation.raw_template()


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The translated template with the parameters' defaults: a stack that creates its own cache and network."""
    from tests.template import cloudformation

    return Stack(cloudformation.translated())


@pytest.fixture(scope="session")
def existing_cache_stack() -> Stack:
    """The translated template for a deployment that uses an existing cache and its network."""
    from tests.template import cloudformation

    return Stack(cloudformation.translated(parameters=EXISTING_CACHE), EXISTING_CACHE)
