"""`GET /avatars/<name>`: serves uploaded profile images (names are unguessable; the format was checked on upload)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from domain.accounts import settings as personal

_HEADERS = {
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


async def avatar_download(request: Request) -> Response:
    name = request.path_params["name"]
    path = personal.avatar_path(name)
    if path is None or not path.is_file():
        return PlainTextResponse("Not found.", status_code=404)
    kind = name.rsplit(".", 1)[-1]
    return FileResponse(path, media_type=personal.AVATAR_CONTENT_TYPES[kind], headers=_HEADERS)
