"""Functions as plain callables, for the local gateways' unit tests."""

import asyncio
from collections.abc import Callable
from typing import Any

from local.workers import FunctionError, Invocation

Behaviour = Callable[[dict[str, Any]], Any]


class FakeFunctions:
    """Functions as plain callables (or coroutines); records every event it was invoked with."""

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        self.calls.append((function_id, event))
        try:
            result = self.behaviours[function_id](event)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:
            return Invocation(error=FunctionError(type(exc).__name__, str(exc)))
        return Invocation(result=result)

    def events_of(self, function_id: str) -> list[dict[str, Any]]:
        return [event for called, event in self.calls if called == function_id]
