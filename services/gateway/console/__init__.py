"""The console: one static page (HTML, CSS, vanilla JS) that the gateway serves at `/`.

No build step and nothing fetched at run time: the files beside this module are
the whole console, shipped as package data. The page talks only to the
gateway's own HTTP API, with the user's JWT kept in the tab's sessionStorage.
Only the files named in `_MEDIA_TYPES` are served.
"""

from __future__ import annotations

from importlib import resources
from types import MappingProxyType

from starlette.responses import Response

from ..errors import ApiError

__all__ = ["INDEX", "response"]

INDEX = "index.html"

_MEDIA_TYPES = MappingProxyType(
    {
        INDEX: "text/html; charset=utf-8",
        "console.css": "text/css; charset=utf-8",
        "console.js": "text/javascript; charset=utf-8",
    }
)

# The page loads nothing but its own two files and calls nothing but this origin;
# the policy makes that a rule the browser enforces (no inline script, no framing).
_HEADERS = MappingProxyType(
    {
        "content-security-policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        # Revalidate every time, so an upgraded gateway never serves a stale script.
        "cache-control": "no-cache",
    }
)


def response(name: str) -> Response:
    """The console file `name`, or a 404 for anything else.

    Read on each request: the files are a few kilobytes, the page cache holds
    them, and the console is not a hot path worth a cache of its own.
    """
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        raise ApiError(404, "Unknown route.", code="not_found")
    content = resources.files(__name__).joinpath(name).read_bytes()
    return Response(content, 200, dict(_HEADERS), media_type=media_type)
