"""The rate limiter: fixed windows, Retry-After, counter keys, what an address is counted by, and what each answer
of DynamoDB to a slot's conditional write means."""

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from leaderboard import rate_limits
from leaderboard.rate_limits import IPV6_NETWORK_PREFIX, Counter, Limit, LimitReached, client_network, take

QUARTER_HOUR = Limit("login-account", allowed=100, window_seconds=900)
MIDNIGHT = 1_796_083_200  # 2026-12-01T00:00:00Z, a multiple of 900 and of 3600


def test_windows_are_aligned_on_the_epoch_and_numbered_one_after_the_other() -> None:
    assert QUARTER_HOUR.window(MIDNIGHT) == MIDNIGHT // 900
    assert QUARTER_HOUR.window(MIDNIGHT + 899.999) == QUARTER_HOUR.window(MIDNIGHT)
    assert QUARTER_HOUR.window(MIDNIGHT + 900) == QUARTER_HOUR.window(MIDNIGHT) + 1
    assert QUARTER_HOUR.window_ends(MIDNIGHT + 10) == MIDNIGHT + 900


@pytest.mark.parametrize(
    ("seconds_into_window", "retry_after"),
    [
        (0, 900),  # a whole window to wait: never more
        (0.4, 900),  # a fraction of a second left counts as a whole second
        (100, 800),
        (899, 1),
        (899.6, 1),  # never 0: "try again now" would be refused again
    ],
)
def test_retry_after_is_the_whole_seconds_left_in_the_window(seconds_into_window: float, retry_after: int) -> None:
    assert QUARTER_HOUR.retry_after(MIDNIGHT + seconds_into_window) == retry_after


def test_a_counter_key_names_its_limit_subject_and_window_and_changes_with_the_window() -> None:
    counter = Counter(QUARTER_HOUR, "alice#198.51.100.7")

    assert counter.key(MIDNIGHT) == f"login-account#alice#198.51.100.7#{MIDNIGHT // 900}"
    assert counter.key(MIDNIGHT + 899) == counter.key(MIDNIGHT)
    assert counter.key(MIDNIGHT + 900) != counter.key(MIDNIGHT)


def test_an_ipv4_address_is_counted_by_itself() -> None:
    assert client_network("198.51.100.7") == "198.51.100.7"
    assert client_network("198.51.100.7") != client_network("198.51.100.8")


def test_an_ipv4_mapped_ipv6_address_is_counted_as_the_ipv4_address() -> None:
    assert client_network("::ffff:198.51.100.7") == "198.51.100.7"


@pytest.mark.parametrize(
    "address",
    ["2001:db8:1:0::1", "2001:db8:1:2::1", "2001:db8:1:ff:ffff:ffff:ffff:ffff", "2001:0DB8:0001:00AB::9"],
)
def test_ipv6_addresses_of_one_slash_56_count_as_one_client(address: str) -> None:
    assert IPV6_NETWORK_PREFIX == 56
    assert client_network(address) == "2001:db8:1::/56"


@pytest.mark.parametrize("address", ["2001:db8:1:100::1", "2001:db8:2::1", "2001:db8:0:ff00::1"])
def test_ipv6_addresses_of_other_slash_56s_count_apart(address: str) -> None:
    assert client_network(address) != "2001:db8:1::/56"


def test_something_that_is_not_an_address_counts_as_itself() -> None:
    assert client_network("not-an-address") == "not-an-address"


# --- taking slots in DynamoDB: what each answer of the transaction means (botocore's Stubber, no network) ---------

ACCOUNT = Limit("login-account", allowed=100, window_seconds=900)
ADDRESS = Limit("login-address", allowed=100, window_seconds=900)
HOURLY = Limit("register", allowed=30, window_seconds=3600)


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setenv("RATE_LIMITS_TABLE", "RateLimits")
    monkeypatch.setattr(rate_limits, "dynamodb", lambda: client)
    monkeypatch.setattr(rate_limits, "clock", lambda: MIDNIGHT + 600.0)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def cancelled(stubber: Stubber, *codes: str) -> None:
    reasons = [{"Code": code} for code in codes]
    stubber.add_client_error(
        "transact_write_items", "TransactionCanceledException", modeled_fields={"CancellationReasons": reasons}
    )


def test_a_counter_that_is_full_refuses_until_the_end_of_its_window_and_is_named(dynamodb: Stubber) -> None:
    cancelled(dynamodb, "None", "ConditionalCheckFailed")

    with pytest.raises(LimitReached) as reached:
        take([Counter(ACCOUNT, "alice"), Counter(ADDRESS, "198.51.100.7")])

    assert reached.value.limits == ("login-address",)
    assert reached.value.retry_after == 300


def test_a_transaction_that_only_ran_into_another_is_tried_again(dynamodb: Stubber) -> None:
    cancelled(dynamodb, "TransactionConflict", "None")
    dynamodb.add_response("transact_write_items", {})

    taken = take([Counter(ACCOUNT, "alice"), Counter(ADDRESS, "198.51.100.7")])

    assert taken.keys == (f"login-account#alice#{MIDNIGHT // 900}", f"login-address#198.51.100.7#{MIDNIGHT // 900}")


def test_a_counter_contended_time_after_time_refuses_with_a_retry_in_a_second(dynamodb: Stubber) -> None:
    for _ in range(3):
        cancelled(dynamodb, "TransactionConflict", "None")

    with pytest.raises(LimitReached) as reached:
        take([Counter(ACCOUNT, "alice"), Counter(ADDRESS, "198.51.100.7")])

    assert reached.value.retry_after == 1


def test_one_counter_is_one_conditional_write_not_a_transaction(dynamodb: Stubber) -> None:
    expected = {
        "TableName": "RateLimits",
        "Key": {"counter_key": {"S": f"register#198.51.100.7#{MIDNIGHT // 3600}"}},
        "UpdateExpression": "ADD attempts :one SET expires_at = :expires",
        "ConditionExpression": "attribute_not_exists(attempts) OR attempts < :allowed",
        # The table's TTL: a whole window after the counter's own ends.
        "ExpressionAttributeValues": {
            ":one": {"N": "1"},
            ":allowed": {"N": "30"},
            ":expires": {"N": str(MIDNIGHT + 7200)},
        },
    }
    dynamodb.add_client_error("update_item", "ConditionalCheckFailedException", expected_params=expected)

    with pytest.raises(LimitReached) as reached:
        take([Counter(HOURLY, "198.51.100.7")])

    assert (reached.value.limits, reached.value.retry_after) == (("register",), 3000)
