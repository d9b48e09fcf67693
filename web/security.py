"""Authentication and cross-site request protection, as Falcon middleware.

* HTTP Basic auth with the web password (username ignored, constant-time comparison) on every
  route but ``/health``, ``/static`` and ``/favicon.ico``, whenever a password is configured (production and
  staging refuse to start without one).
* State-changing requests: a browser's must come from our own pages, a script's (no cookie, no
  ``Origin``, no fetch metadata) is let through, as Faktory's rule does (Go's
  CrossOriginProtection). A request is refused when

  - its ``Sec-Fetch-Site`` is anything but ``same-origin`` or ``none``;
  - without ``Sec-Fetch-Site``, its ``Origin`` (or, without that, its ``Referer``) names another
    host than the ``Host`` it was sent to;
  - it carries our CSRF cookie (a browser that has loaded one of our pages) but not the matching
    form field: the double-submit token, for browsers that send neither header.

  Basic auth still applies to all of them: a script needs the password, nothing else.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from urllib.parse import urlsplit

import falcon

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_COOKIE = "faktory_csrf"
CSRF_FIELD = "csrf_token"
REALM = 'Basic realm="Faktory"'


def _public(path: str) -> bool:
    return path in ("/health", "/favicon.ico") or path.startswith("/static/")


class ScriptName:
    """``X-Script-Name: /prefix`` from a proxy: strip it from the path, prefix generated links."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        prefix = (req.get_header("X-Script-Name") or "").rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = ""
        if prefix and req.path.startswith(prefix):
            req.path = req.path[len(prefix):] or "/"
        req.context.prefix = prefix


class BasicAuth:
    """401 unless the request carries the password (any username)."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # public paths show no data, so not even their error pages count as signed in
        req.context.authenticated = False
        if _public(req.path):
            return
        if not self.password:
            req.context.authenticated = True
            return
        header = req.get_header("Authorization") or ""
        if not header.lower().startswith("basic "):
            raise falcon.HTTPUnauthorized(title="Authorization required", challenges=[REALM])
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        _, _, given = decoded.partition(b":")
        if not hmac.compare_digest(given, self.password):
            raise falcon.HTTPUnauthorized(title="Authorization failed", challenges=[REALM])
        req.context.authenticated = True


def cross_origin(req: falcon.Request) -> bool:
    """Go's CrossOriginProtection rule, as Faktory 1.9.4+ applies it, plus the ``Referer``.

    The ``Referer`` is a fallback for browsers that send neither ``Sec-Fetch-Site`` nor
    ``Origin``; scripts send none of the three and pass.
    """
    site = req.get_header("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = req.get_header("Origin") or req.get_header("Referer")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != (req.get_header("Host") or req.netloc).lower()


class CsrfProtection:
    """Reject foreign state-changing requests; issue and check the CSRF token.

    Every page gets the token (``req.context.csrf``) for its forms; the cookie is SameSite=Strict
    and HttpOnly so another site can neither send nor read it. The token is checked whenever the
    cookie comes with the request; a request without it (a script with the password) is judged
    by ``cross_origin`` alone.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = req.cookies.get(CSRF_COOKIE, "")
        if len(token) < 32:
            token = secrets.token_urlsafe(32)
            resp.set_cookie(CSRF_COOKIE, token, path="/", http_only=True, same_site="Strict",
                            secure=req.scheme == "https")
        req.context.csrf = token
        if req.method in SAFE_METHODS or _public(req.path):
            return
        if cross_origin(req):
            raise falcon.HTTPForbidden(title="Cross-origin request refused")
        if CSRF_COOKIE not in req.cookies:
            return
        form = req.get_media(default_when_empty={}) if _is_form(req) else {}
        given = form.get(CSRF_FIELD, "") if isinstance(form, dict) else ""
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
            raise falcon.HTTPForbidden(title="Invalid or missing CSRF token")


def _is_form(req: falcon.Request) -> bool:
    return (req.content_type or "").startswith(falcon.MEDIA_URLENCODED)
