"""Where built reports live. Local files by default; anything with the same four methods (S3, GCS) can replace it
through `configure_storage` at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Protocol

from domain.config import config


class ExportStorage(Protocol):
    async def put(self, key: str, source: Path) -> int:
        """Takes over a finished local file under `key`; returns its size in bytes."""

    def local_path(self, key: str) -> Path | None:
        """A local file the web server can stream, or None when the store serves files itself (then `url`)."""

    def url(self, key: str, file_name: str, expires_in_seconds: int) -> str | None:
        """A direct, expiring download address for stores that have one (a presigned S3 URL); None for local."""

    async def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under one directory, `<customer id>/<report id>-<random>.<ext>`; keys never come from clients."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key escapes the exports directory: {key!r}")
        return path

    async def put(self, key: str, source: Path) -> int:
        target = self._path(key)

        def move() -> int:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            return target.stat().st_size

        return await asyncio.to_thread(move)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def url(self, key: str, file_name: str, expires_in_seconds: int) -> str | None:
        return None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)


_override: dict[str, ExportStorage] = {}


def configure_storage(storage: ExportStorage | None) -> None:
    """Replaces the local store (None restores it)."""
    _override.clear()
    if storage is not None:
        _override["storage"] = storage


def storage() -> ExportStorage:
    return _override.get("storage") or LocalStorage(Path(config().exports_dir))
