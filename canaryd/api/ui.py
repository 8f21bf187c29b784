"""GET /ui/: the web dashboard, static files shipped in the package (canaryd/ui/).

The pages are plain JavaScript modules that call the same API as the CLI, with the token
the user enters (kept in the tab's sessionStorage, sent as `Authorization: Bearer`). This
module only serves the files, with a strict Content-Security-Policy: scripts, styles and
connections from this origin only, nothing inline, no frames, no forms posting elsewhere.
The file set is fixed when the app is built (no path from a request reaches the disk), and
every file is read once and kept in memory with its ETag.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass

from aiohttp import web

PREFIX = "/ui/"
CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidated with the ETag: a new version shows at once
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of the package's ui/ directory with a known type, by file name."""
    assets: dict[str, Asset] = {}
    root = importlib.resources.files("canaryd").joinpath("ui")
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind("."):] if "." in name else ""
        if not entry.is_file() or suffix not in TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = Asset(body, TYPES[suffix], etag)
    return assets


ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("canaryd_ui_assets", dict)


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = {**HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers,
                                                  "Content-Type": asset.content_type})


async def index(request: web.Request) -> web.Response:
    return _answer(request, request.app[ASSETS]["index.html"])


async def asset(request: web.Request) -> web.Response:
    found = request.app[ASSETS].get(request.match_info["file"])
    if found is None:
        raise web.HTTPNotFound()
    return _answer(request, found)


async def redirect(_request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(PREFIX)


def add_routes(app: web.Application) -> None:
    app[ASSETS] = load_assets()
    app.router.add_get("/ui", redirect)
    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "{file}", asset)
