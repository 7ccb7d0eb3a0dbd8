"""Viewers of the bearer tokens this process authenticated in the last few seconds (`AUTH_CACHE_SECONDS`).

Every request authenticates its token; at call rate (a voice platform asks twice per call) the lookup (a session
with its user, membership, customer and partner; an API key with its customer, partner and toggles) cost more than
the work it guarded. A hit answers from memory; an entry lives at most `AUTH_CACHE_SECONDS` and never past the
credential's own expiry.

Revocation stays immediate: every `access.revoked` outbox event (sign-out, password change, account deleted, key
or token revoked, customer disabled, a feature switched off, an organization switch) clears the cache of the
process that emits it at once (`domain/events`), and of every API process when the relay publishes it after commit
(`server/app.py` listens on the pub/sub). Each clear starts a new generation: a lookup that began before it cannot
store what it read.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from domain.viewer import Viewer

MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, tuple[float, Viewer]] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()  # the tokens themselves are not kept

    def get(self, token: str) -> Viewer | None:
        key = self._key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, token: str, viewer: Viewer, seconds: float, generation: int) -> None:
        """Keeps `viewer` for `seconds` (less if its credential expires sooner), unless the cache was cleared since
        `generation` was read (before the lookup that produced the viewer)."""
        if generation != self.generation or seconds <= 0:
            return
        if viewer.credential_expires_at is not None:
            seconds = min(seconds, (viewer.credential_expires_at - datetime.now(UTC)).total_seconds())
            if seconds <= 0:
                return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[self._key(token)] = (time.monotonic() + seconds, viewer)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)


tokens = TokenCache()
