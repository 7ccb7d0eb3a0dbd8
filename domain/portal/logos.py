"""Uploaded logos (partners' and customers'): PNG or JPG recognised by content and decoded, re-encoded by Pillow
(metadata and anything hidden after the image dropped, at most LOGO_MAX_SIDE pixels a side), stored under
LOGOS_DIR and served at `/logos/<unguessable name>`. SVG (it can carry scripts) and every other format is refused."""

from __future__ import annotations

import asyncio
import io
import re
import secrets
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from domain.accounts.commands import UploadedFile
from domain.config import config
from domain.errors import DomainError, ErrorCode

LOGO_MAX_BYTES = 512 * 1024  # well under the server's request body cap (max_body_bytes)
LOGO_MAX_SIDE = 1024  # larger logos are scaled down
LOGO_MAX_PIXELS = 25_000_000  # refused before decoding: a tiny file can claim a huge canvas
LOGO_PATH = "/logos/"
LOGO_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg"}
LOGO_NAME = re.compile(r"^(partner|customer)-[0-9]{1,10}-[A-Za-z0-9_-]{16,64}\.(png|jpg)$")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))


def _invalid(message: str) -> DomainError:
    return DomainError.single(ErrorCode.INVALID, message, "logo")


def reencode(content: bytes) -> tuple[bytes, str]:
    """(the re-encoded image, its extension); INVALID for anything but a sound PNG or JPG."""
    kind = next((name for magic, name in _MAGIC if content.startswith(magic)), None)
    if kind is None:
        raise _invalid("Upload a PNG or JPG image (SVG and other formats are not accepted).")
    try:
        with Image.open(io.BytesIO(content), formats=[kind]) as opened:
            width, height = opened.size
            if width * height > LOGO_MAX_PIXELS:
                raise _invalid(f"The image is too large ({width}×{height} pixels).")
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((LOGO_MAX_SIDE, LOGO_MAX_SIDE))
            out = io.BytesIO()
            if kind == "PNG":
                image.convert("RGBA").save(out, format="PNG", optimize=True)
                return out.getvalue(), "png"
            image.convert("RGB").save(out, format="JPEG", quality=90, optimize=True)
            return out.getvalue(), "jpg"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise _invalid("The image could not be read: upload a valid PNG or JPG.") from None


async def read_logo(file: UploadedFile) -> tuple[bytes, str]:
    """Reads at most one byte past the limit (never an oversized upload whole) and re-encodes it off the loop."""
    content = await file.read(LOGO_MAX_BYTES + 1)
    if not content:
        raise _invalid("The file is empty.")
    if len(content) > LOGO_MAX_BYTES:
        raise _invalid(f"Logos are limited to {LOGO_MAX_BYTES // 1024} KB.")
    return await asyncio.to_thread(reencode, content)


def logo_path(name: str) -> Path | None:
    """The stored file behind a logo name, or None for a name we never issue."""
    return Path(config().logos_dir) / name if LOGO_NAME.match(name) else None


def new_logo_name(owner: str, owner_id: int, extension: str) -> str:
    return f"{owner}-{owner_id}-{secrets.token_urlsafe(16)}.{extension}"


def logo_url(name: str) -> str:
    return f"{config().public_url.rstrip('/')}{LOGO_PATH}{name}"


def name_of(url: str | None) -> str | None:
    """The stored name behind a logo URL we issued (None for others, e.g. a URL set before uploads)."""
    if not url:
        return None
    name = url.rsplit("/", 1)[-1]
    return name if LOGO_NAME.match(name) and f"{LOGO_PATH}{name}" in url else None


def write_logo(name: str, content: bytes) -> None:
    folder = Path(config().logos_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def remove_logo(url: str | None) -> None:
    name = name_of(url)
    path = logo_path(name) if name else None
    if path is not None:
        path.unlink(missing_ok=True)
