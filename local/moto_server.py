"""moto's server (``python -m local.moto_server -H 127.0.0.1 -p PORT``), safe for concurrent requests as AWS is.

moto's server answers each request in a thread of its own, but its DynamoDB and SQS backends are not thread-safe:

- TransactWriteItems deep-copies every table it writes and, when the transaction is cancelled (a failed condition),
  puts those copies back, silently undoing whatever other requests wrote to those tables meanwhile. On AWS a
  cancelled transaction changes nothing and loses nobody's write. Copying whole tables also makes every transaction
  slower as the tables grow (about 40 ms per transaction at 2,000 items).
- Two concurrent ReceiveMessage calls can both deliver one message, or both try to move it to the dead-letter queue.

So here every DynamoDB request holds one lock (they are CPU-bound Python under the GIL anyway: no throughput is
lost), a transaction saves and restores only the items it writes, and every SQS backend call holds another lock —
except the waiting of a long poll, which happens outside it, as a series of short receives.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import moto.server
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend

_DYNAMODB_LOCK = threading.RLock()
_SQS_LOCK = threading.RLock()
# How often a long poll looks again when messages are visible but none could be delivered (FIFO groups in flight).
_LONG_POLL_RECHECK_SECONDS = 0.02


def _holding(lock: threading.RLock, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return function(*args, **kwargs)

    return locked


# --- DynamoDB ---


class _CopyWithoutTables:
    """The ``copy`` module as moto's DynamoDB models see it: tables are not copied (transactions save their items)."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


_SavedItem = tuple[Table, DynamoType, DynamoType | None, Item | None]


def _items_written_by(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[_SavedItem]:
    """A copy of every item a transaction may write, as it is before the transaction (None: no such item)."""
    saved: list[_SavedItem] = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        ((operation, request),) = entry.items()
        table = backend.tables.get(str(request.get("TableName"))) if isinstance(request, dict) else None
        if operation not in ("Put", "Update", "Delete") or table is None:
            continue
        key = request.get("Item") if operation == "Put" else request.get("Key")
        try:
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except (KeyError, TypeError, AttributeError):
            continue  # a malformed request: moto refuses it before writing anything for it
        saved.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
    return saved


def _put_back(saved: list[_SavedItem]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if item is None:
            table.delete_item(hash_value, range_value)
        elif range_value is not None:
            table.items[hash_value][range_value] = item
        else:
            table.items[hash_value] = item  # type: ignore[assignment]  # as moto's own put_item does


def _transact_write_items(original: Callable[[DynamoDBBackend, list[dict[str, Any]]], None]) -> Any:
    @functools.wraps(original)
    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved = _items_written_by(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            _put_back(saved)  # all or nothing, touching nothing else
            raise

    return transact_write_items


# --- SQS ---


def _receive_message(original: Callable[..., Any]) -> Any:
    @functools.wraps(original)
    def receive_message(
        self: SQSBackend,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _SQS_LOCK:  # one short receive at a time
                received = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
                queue = self.get_queue(queue_name)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            if queue.messages:  # visible, yet not deliverable now (a FIFO group in flight): look again soon
                time.sleep(min(_LONG_POLL_RECHECK_SECONDS, remaining))
            else:
                # Woken by a send; outside the lock. (A float is fine: it is threading.Condition.wait_for's timeout.)
                queue.wait_for_messages(min(remaining, 1.0))  # type: ignore[arg-type]

    return receive_message


def install() -> None:
    """Make moto's DynamoDB and SQS backends safe for concurrent requests (in this process)."""
    if getattr(DynamoHandler, "_local_serialised", False):
        return
    DynamoHandler.call_action = _holding(_DYNAMODB_LOCK, DynamoHandler.call_action)  # type: ignore[method-assign]
    DynamoHandler._local_serialised = True  # type: ignore[attr-defined]
    dynamodb_models.copy = _CopyWithoutTables  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = _transact_write_items(  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items
    )
    for name, member in list(vars(SQSBackend).items()):
        if inspect.isfunction(member) and not name.startswith("_") and name != "receive_message":
            setattr(SQSBackend, name, _holding(_SQS_LOCK, member))
    SQSBackend.receive_message = _receive_message(SQSBackend.receive_message)  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """Run moto's server with the fixes installed (same arguments as ``python -m moto.server``)."""
    install()
    moto.server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
