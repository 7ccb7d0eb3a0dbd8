"""`POST /v1/stripe/webhook` (the card provider's events, verified by their signature and applied once per event id)
and `GET /invoices/<signed>` (an invoice's PDF for whoever holds an authentic, unexpired link).

Stripe retries an event until it gets a 2xx: a bad signature answers 400 (never retried into success), an event
handled or already handled 200, a failure nobody foresaw a 500 (JSON, with the request id) so Stripe tries again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from domain.invoices import links
from domain.invoices.render import file_name, invoice_pdf
from domain.invoices.services import invoice_pdf_for
from domain.payments.events import handle_provider_event
from domain.payments.providers import InvalidEvent
from domain.viewer import Viewer
from server.logging import log

MAX_EVENT_BYTES = 1_000_000
_NO_STORE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


async def stripe_webhook(request: Request) -> Response:
    request_id = getattr(request.state, "request_id", "")
    body = await request.body()
    if len(body) > MAX_EVENT_BYTES:
        return JSONResponse({"error": {"code": "TOO_LARGE", "requestId": request_id}}, status_code=413)
    try:
        outcome = await handle_provider_event(body, request.headers.get("stripe-signature"))
    except InvalidEvent:
        return JSONResponse({"error": {"code": "INVALID_SIGNATURE", "requestId": request_id}}, status_code=400)
    except Exception:
        log.exception("provider_event_failed", request_id=request_id)
        return JSONResponse({"error": {"code": "INTERNAL", "requestId": request_id}}, status_code=500)
    return JSONResponse({"received": True, "outcome": outcome})


async def invoice_download(request: Request) -> Response:
    viewer = Viewer.anonymous(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", ""),
    )
    try:
        invoice = await invoice_pdf_for(request.path_params["token"], viewer)
    except links.LinkInvalid:
        return PlainTextResponse("This invoice link is not valid.", status_code=403, headers=_NO_STORE)
    except links.LinkExpired:
        return PlainTextResponse("This invoice link has expired.", status_code=410, headers=_NO_STORE)
    headers = {**_NO_STORE, "Content-Disposition": f'attachment; filename="{file_name(invoice)}"'}
    return Response(invoice_pdf(invoice), media_type="application/pdf", headers=headers)
