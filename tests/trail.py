"""The audit trail in memory: the real pipeline (``audit_to``) writing into a list.

Every line is parsed and held to docs/audit.schema.json as it arrives, and a
test can wait for a line instead of sleeping (``wait``, ``wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from tests.schema import audit_validator

Line = dict[str, Any]


class Trail:
    """The audit stream in memory: every line parsed, schema-checked and kept."""

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.raw = bytearray()
        self.errors: list[str] = []
        self._validator = audit_validator()
        self._changed = asyncio.Event()

    # The AuditStream protocol: structlog writes one line per call.
    def write(self, data: bytes) -> int:
        self.raw += data
        for raw in data.splitlines():
            line = orjson.loads(raw)
            self.errors += [
                f"{e.message} in {raw[:300]!r}" for e in self._validator.iter_errors(line)
            ]
            self.lines.append(line)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return len(data)

    def flush(self) -> None:
        pass

    def find(self, event: str, **fields: Any) -> list[Line]:
        return [
            x
            for x in self.lines
            if x["event"] == event and all(x.get(k) == v for k, v in fields.items())
        ]

    def events(self) -> list[str]:
        return [x["event"] for x in self.lines]

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        """The first truthy ``predicate()``, re-checked on every new line."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                if result := predicate():
                    return result
                await changed.wait()

    async def wait(self, event: str, timeout_s: float = 20.0, **fields: Any) -> Line:
        found = await self.wait_for(lambda: self.find(event, **fields), timeout_s)
        return found[0]  # type: ignore[no-any-return]

    def assert_clean(self, secrets: Iterable[str]) -> None:
        assert not self.errors, "\n".join(self.errors[:10])
        for secret in secrets:
            assert secret.encode() not in self.raw, "a secret reached the audit trail"
