"""The GraphQL console (GraphiQL) that `/graphql` shows a browser outside production: GraphiQL 3 and React from
`server/static/graphiql/` (vendored from the npm registry by scripts/vendor_graphiql.sh), booted by
`server/static/console.js`. It works offline: no CDN, no font or script from elsewhere (the policy below forbids it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from server.assets import asset, templates
from server.embed import own_origin

ASSETS = (
    "graphiql/graphiql.min.css",
    "console.css",
    "graphiql/react.production.min.js",
    "graphiql/react-dom.production.min.js",
    "graphiql/graphiql.min.js",
    "console.js",
)


def console_page(request: Request) -> HTMLResponse:
    own = own_origin(request)
    socket = own.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",  # GraphiQL's editors position themselves with style attributes
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src 'self' {socket}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    html = templates().get_template("console.html.j2").render(versions={name: asset(name).version for name in ASSETS})
    return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"})
