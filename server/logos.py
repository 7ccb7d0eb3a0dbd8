"""`GET /logos/<name>`: serves uploaded logos (names are unguessable; each was re-encoded on upload)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from domain.portal import logos

_HEADERS = {
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    # logos are shown in emails and on partners' own domains
    "Cross-Origin-Resource-Policy": "cross-origin",
}


async def logo_download(request: Request) -> Response:
    name = request.path_params["name"]
    path = logos.logo_path(name)
    if path is None or not path.is_file():
        return PlainTextResponse("Not found.", status_code=404)
    return FileResponse(path, media_type=logos.LOGO_CONTENT_TYPES[name.rsplit(".", 1)[-1]], headers=_HEADERS)
