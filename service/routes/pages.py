"""Pages for people: the demo page and the interactive API docs, and the files of the ask-page
widget (/widget.js, /widget.css) that forums load. The pages load only the service's own files
(the docs' Swagger UI comes from the openapi-ui-bundles package, not a CDN), so they work
offline and run no third party's script in the service's origin."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from openapi_ui_bundles import swagger_ui

#: The demo page's and the ask-page widget's files, served under /static.
STATIC = Path(__file__).resolve().parents[1] / "static"
#: Swagger UI's files, served under /static-docs.
SWAGGER_UI = Path(swagger_ui.static_path)
DOCS_ASSETS = "/static-docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

# the page loads only its own files; nothing inline, nothing from elsewhere, no framing
_DEMO_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI starts from an inline script and styles itself inline; all else is this origin's
_DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

# the widget is loaded by other sites' pages: any origin may embed it (CORS governs the API it
# calls, not the script), and an hour's caching keeps a forum's page loads off this service
_WIDGET_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff",
                   "Cross-Origin-Resource-Policy": "cross-origin"}

router = APIRouter(include_in_schema=False)


@router.head("/")  # uptime checkers often ask with HEAD
@router.get("/")
def demo() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _DEMO_POLICY})


def _widget_file(name: str, kind: str) -> Callable[[Request], Response]:
    # read once: the files change with a release, and a strong ETag lets browsers revalidate
    content = (STATIC / name).read_bytes()
    headers = {**_WIDGET_HEADERS, "ETag": '"' + hashlib.sha256(content).hexdigest()[:32] + '"'}

    def serve(request: Request) -> Response:
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(content, media_type=kind, headers=headers)

    return serve


# the ask-page widget: one script tag on the forum's page (see docs/forum-integration.md)
router.add_api_route("/widget.js", _widget_file("widget.js", "text/javascript; charset=utf-8"))
router.add_api_route("/widget.css", _widget_file("widget.css", "text/css; charset=utf-8"))


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - API docs",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # the default sends the schema's address to validator.swagger.io for a badge
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = _DOCS_POLICY
    return page


@router.get(OAUTH2_REDIRECT)
def docs_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()
