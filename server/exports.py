"""`GET /exports/<signed>`: streams a built usage report to whoever holds an authentic, unexpired link.

403 for a forged or altered link, 410 for an expired one (or a report whose file is gone); each download is an
audit event of type EXPORT.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from domain.reports import links, services
from domain.viewer import Viewer

_NO_STORE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


async def export_download(request: Request) -> Response:
    token = request.path_params["token"]
    viewer = Viewer.anonymous(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", ""),
    )
    try:
        download = await services.open_download(token, viewer, audit=request.method != "HEAD")
    except links.LinkInvalid:
        return PlainTextResponse("This download link is not valid.", status_code=403, headers=_NO_STORE)
    except (links.LinkExpired, services.Gone):
        return PlainTextResponse("This download link has expired.", status_code=410, headers=_NO_STORE)
    report = download.report
    if download.path is None:
        assert download.url is not None
        return RedirectResponse(download.url, status_code=302, headers=_NO_STORE)
    return FileResponse(
        download.path,
        media_type=report.content_type,
        filename=report.file_name,
        headers=_NO_STORE,
    )
