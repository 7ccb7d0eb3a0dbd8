"""Persisted operations, over HTTP and the WebSocket alike.

Automatic persisted queries (Apollo's APQ protocol): a client sends `extensions.persistedQuery {version: 1,
sha256Hash}` without the query; an unknown hash answers `PersistedQueryNotFound` (code `PERSISTED_QUERY_NOT_FOUND`,
HTTP 200 so Apollo Client retries rather than switching APQ off), the client sends the query with its hash once, the
server checks the hash and keeps the text; from then on the hash alone is enough, and a query sent as `GET
/graphql?extensions=…&variables=…` has a short URL that a CDN can cache. Texts are kept in Redis for a day (shared by
every process) or, in the embedded default, in a bounded in-process LRU.

Trusted documents (`PERSISTED_ONLY=true`, for production): only the operations in `PERSISTED_DOCUMENTS` (a JSON file
built from the clients' documents: graphql-codegen's `persisted-documents.json` / Relay's `{"<hash>": "<text>"}`, or
Apollo's persisted query manifest) and the embed widget's own are executed, by hash (`extensions.persistedQuery` or
`documentId`) or by their exact text; anything else is refused with `PERSISTED_QUERY_NOT_IN_LIST` and nothing is
registered. An attacker then cannot run a document the clients do not contain, however cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from domain.errors import ErrorCode

log = structlog.get_logger("partnerdesk.persisted")

NOT_FOUND = str(ErrorCode.PERSISTED_QUERY_NOT_FOUND)
NOT_IN_LIST = str(ErrorCode.PERSISTED_QUERY_NOT_IN_LIST)
BAD_REQUEST = str(ErrorCode.BAD_REQUEST)
APQ_TTL_SECONDS = 24 * 3600
APQ_MEMORY_ENTRIES = 5_000  # documents kept per process without Redis (least recently used go first)
APQ_MAX_CHARS = 100_000  # longer texts run but are not kept
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PersistedQueryError(Exception):
    """The request names a document this server will not run; `status` is the HTTP status to answer with."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_allowlist(path: Path) -> dict[str, str]:
    """Hash (and id) → document text, from graphql-codegen's / Relay's map or Apollo's manifest."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        pairs: Iterable[tuple[Any, Any]] = ((op.get("id"), op.get("body")) for op in data.get("operations") or ())
    elif isinstance(data, dict):
        pairs = data.items()
    else:
        raise ValueError(f"{path}: expected a JSON object of hash → document, or an Apollo persisted query manifest")
    documents: dict[str, str] = {}
    for key, text in pairs:
        if not isinstance(key, str) or not isinstance(text, str):
            raise ValueError(f"{path}: every entry needs a string id and a string document")
        documents[key.removeprefix("sha256:").lower()] = text
        documents[sha256(text)] = text
    return documents


@dataclass(frozen=True, slots=True)
class Requested:
    """What a request says about its document: the text, a hash, or both."""

    query: str | None
    hash: str | None
    apq: bool  # the hash came as Apollo's `extensions.persistedQuery`

    @classmethod
    def of(cls, query: Any, extensions: Any, document_id: Any = None) -> Requested:
        persisted = extensions.get("persistedQuery") if isinstance(extensions, Mapping) else None
        if persisted is not None:
            if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
                raise PersistedQueryError(BAD_REQUEST, "Only version 1 of persisted queries is supported.", 400)
            value = persisted.get("sha256Hash")
            apq = True
        elif document_id is not None:
            value = document_id.removeprefix("sha256:") if isinstance(document_id, str) else None
            apq = False
        else:
            return cls(query if isinstance(query, str) else None, None, False)
        if not isinstance(value, str) or not _SHA256.match(value.lower()):
            raise PersistedQueryError(BAD_REQUEST, "The persisted query hash must be a SHA-256 in hex.", 400)
        return cls(query if isinstance(query, str) else None, value.lower(), apq)


class _Store:
    """Registered APQ texts: Redis (shared, with a TTL) or an in-process LRU."""

    def __init__(self, redis_url: str | None, key_prefix: str) -> None:
        self.redis = aioredis.from_url(redis_url) if redis_url else None
        self.prefix = f"{key_prefix}:apq:"
        self.memory: OrderedDict[str, str] = OrderedDict()

    async def get(self, digest: str) -> str | None:
        if self.redis is None:
            text = self.memory.get(digest)
            if text is not None:
                self.memory.move_to_end(digest)
            return text
        try:
            raw = await self.redis.getex(self.prefix + digest, ex=APQ_TTL_SECONDS)
        except Exception:  # Redis down: the client sends the text again, which runs anyway
            log.warning("apq_store_unavailable", exc_info=True)
            return None
        return raw.decode() if isinstance(raw, bytes) else raw

    async def put(self, digest: str, text: str) -> None:
        if len(text) > APQ_MAX_CHARS:
            return
        if self.redis is None:
            self.memory[digest] = text
            self.memory.move_to_end(digest)
            while len(self.memory) > APQ_MEMORY_ENTRIES:
                self.memory.popitem(last=False)
            return
        try:
            await self.redis.set(self.prefix + digest, text, ex=APQ_TTL_SECONDS)
        except Exception:
            log.warning("apq_store_unavailable", exc_info=True)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class PersistedDocuments:
    """Turns what a request sent into the document text to run, or refuses it (`PersistedQueryError`)."""

    def __init__(
        self,
        *,
        only: bool,
        allowlist: Mapping[str, str],
        redis_url: str | None = None,
        key_prefix: str = "pd",
    ) -> None:
        self.only = only
        self.allowlist = dict(allowlist)
        self.store = _Store(redis_url, key_prefix)

    @classmethod
    def for_deployment(
        cls, *, only: bool, path: Path | None, builtin: Iterable[str], redis_url: str | None, key_prefix: str
    ) -> PersistedDocuments:
        """The clients' allowlist file (if any) plus `builtin` documents (the embed widget's)."""
        allowlist = load_allowlist(path) if path is not None else {}
        allowlist.update({sha256(text): text for text in builtin})
        return cls(only=only, allowlist=allowlist, redis_url=redis_url, key_prefix=key_prefix)

    async def resolve(self, query: Any, extensions: Any, document_id: Any = None) -> str | None:
        """The text to execute (None when the request carries no document: the transport says so as usual)."""
        requested = Requested.of(query, extensions, document_id)
        if requested.hash is not None and requested.query is not None and sha256(requested.query) != requested.hash:
            raise PersistedQueryError(BAD_REQUEST, "The persisted query hash does not match the query.", 400)
        if self.only:
            return self._trusted(requested)
        if requested.hash is None:
            return requested.query
        if requested.query is None:
            text = self.allowlist.get(requested.hash) or await self.store.get(requested.hash)
            if text is None:
                # the message Apollo Client looks for; 200, so it sends the query rather than turning APQ off
                raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound", 200)
            return text
        if requested.apq:
            await self.store.put(requested.hash, requested.query)
        return requested.query

    def _trusted(self, requested: Requested) -> str | None:
        if requested.hash is not None:
            text = self.allowlist.get(requested.hash)
            if text is not None:
                return text
            if requested.query is None:
                raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound", 200)
        elif requested.query is None:
            return None
        elif sha256(requested.query) in self.allowlist:
            return requested.query
        raise PersistedQueryError(
            NOT_IN_LIST, "This server runs only the operations its clients were built with (persisted documents).", 400
        )

    async def close(self) -> None:
        await self.store.close()
