"""What every approval-link page shares: one autoescaping Jinja2 environment, the security headers,
the reviewer's name cookie, the same-origin check for form posts, and the lazily built link signer.

The pages load nothing from outside and run no script at all: the Content-Security-Policy has no
script source, so even markup that slipped through escaping could not execute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from app.approvals.links import LinkSigner
from app.approvals.queue import ApprovalQueue
from app.core.models import ActionRecord, Status
from app.core.settings import Settings

REVIEWER_COOKIE = "opsdesk_reviewer"
_REVIEWER_COOKIE_SECONDS = 180 * 24 * 3600
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def origin_of(url: str) -> str:
    """scheme://host[:port] as a browser sends it in the Origin header (default ports dropped)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def is_link_request(request: Request) -> bool:
    """A request from a person's browser following a link or posting one of our forms: its
    errors are HTML pages, not JSON."""
    content_type = request.headers.get("content-type", "")
    return "t" in request.query_params or content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )


def multiline(text: str | None) -> str | None:
    """Browsers send textarea line breaks as CRLF; store the text as it was shown."""
    return None if text is None else text.replace("\r\n", "\n")


class Pages:
    """Renders templates under app/templates with the headers every page carries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.public_base_url.rstrip("/")
        self.origin = origin_of(self.base_url)
        self.env = Environment(
            loader=PackageLoader("app", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = self.when
        self.headers = {
            # No script source at all. Inline styles are allowed because the sandboxed email
            # preview inherits this policy and e-mail HTML is styled inline; remote images are not
            # loaded (a model-written draft could carry a tracking pixel), only data: ones.
            "Content-Security-Policy": "; ".join(
                (
                    "default-src 'none'",
                    "style-src 'unsafe-inline'",
                    "img-src data:",
                    f"form-action {self.origin}",
                    "frame-ancestors 'none'",
                    "base-uri 'none'",
                )
            ),
            "X-Frame-Options": "DENY",  # a framed one-click Approve button could be clickjacked
            # same-origin keeps the Origin header on our own form posts (no-referrer would turn it
            # into "null") and never sends a URL holding a token to another site
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Robots-Tag": "noindex, nofollow",
        }

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return ""
        return moment.astimezone(self.settings.time_zone).strftime("%Y-%m-%d %H:%M %Z")

    def render(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=self.headers)

    def message(
        self,
        title: str,
        message: str,
        *,
        status_code: int,
        link: str | None = None,
        link_text: str = "Back",
        notes: list[str] | None = None,
    ) -> HTMLResponse:
        return self.render(
            "message.html",
            status_code=status_code,
            title=title,
            message=message,
            link=link,
            link_text=link_text,
            notes=notes or [],
        )


def outcome(action: ActionRecord, pages: Pages) -> str:
    """What became of an action that is no longer pending, in one sentence."""
    if action.decision is not None:
        shown = {"approved": "approved", "rejected": "rejected", "modified": "edited, then approved"}
        text = f"Already decided by {action.decided_by} at {pages.when(action.decided_at)}: {shown[action.decision]}."
        if action.status not in (Status.APPROVED, Status.REJECTED):
            text += f" It is now {action.status.value}."
        return text
    if action.status is Status.EXPIRED:
        return f"This approval expired at {pages.when(action.expires_at)} without a decision."
    if action.status is Status.CANCELLED:
        return f"This action was cancelled at {pages.when(action.updated_at)}: {action.last_error or ''}".strip()
    if action.status is Status.PENDING:
        return "This action is waiting for a decision."
    return f"This action was approved automatically by the policy; it is now {action.status.value}."


class LinkPages:
    """Base of the pages behind signed links."""

    def __init__(self, settings: Settings, queue: ApprovalQueue, pages: Pages) -> None:
        self.settings = settings
        self.queue = queue
        self.pages = pages

    @cached_property
    def signer(self) -> LinkSigner:
        # built on first use: the Bearer API works without APPROVAL_LINK_SECRET, links do not
        return LinkSigner(self.settings)

    def posted_from_our_pages(self, request: Request) -> bool:
        """CSRF defence for form posts. The signed token in the form is the real proof: it is a
        secret only the link holder has, so another site cannot forge a post that decides
        anything. On top of that, when the browser says where the post comes from (Origin, else
        Referer) it must be PUBLIC_BASE_URL's origin: a token that leaked (a shared screenshot,
        browser history) still cannot be used from another site's page. Clients that send
        neither header (curl with the token) are judged by the token alone. The reviewer cookie
        only carries a name, and is SameSite=Lax so other sites' posts do not get it."""
        origin = request.headers.get("origin")
        if origin is not None:
            return origin_of(origin) == self.pages.origin
        referer = request.headers.get("referer")
        if referer is not None:
            return origin_of(referer) == self.pages.origin
        return True

    def cross_site(self) -> HTMLResponse:
        return self.pages.message(
            "Not sent from opsdesk",
            "This form was posted from another site, so nothing was decided. "
            "Open the link again and decide on opsdesk's own page.",
            status_code=403,
        )

    @staticmethod
    def reviewer_of(request: Request) -> str:
        name = unquote(request.cookies.get(REVIEWER_COOKIE, ""))[:64]
        return "" if _CONTROL_CHARS.search(name) else name.strip()

    def remember_reviewer(self, response: Response, name: str) -> None:
        response.set_cookie(
            REVIEWER_COOKIE,
            quote(name, safe=""),
            max_age=_REVIEWER_COOKIE_SECONDS,
            path="/approvals",
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
        )

    @staticmethod
    def form_fields(form: Mapping[str, Any], prefix: str) -> dict[str, str]:
        return {
            key.removeprefix(prefix): value
            for key, value in form.items()
            if key.startswith(prefix) and isinstance(value, str)
        }
