"""Dashboard sessions and CSRF, derived from the API token (no session table).

A session cookie is `<actor b64>.<issued unix time>.<HMAC-SHA256(token, actor|issued)>`:
it proves the holder once presented the token without being the token, expires after
SESSION_TTL_S, and every session dies when the token is rotated. The cookie is HttpOnly,
SameSite=Strict and Path=/ui.

State-changing forms carry `csrf` = HMAC(token, "csrf|" + session cookie) (bound to the
session, so a token from another session is refused) and must come from our own origin
(Origin, else Referer, must equal the request's scheme://host; neither present: refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

COOKIE = "hp_session"
SESSION_TTL_S = 12 * 3600
_ACTOR = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,63}$")


@dataclass(frozen=True)
class Session:
    actor: str
    issued: int
    cookie: str


def _sign(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time, like the bearer guard."""
    return hmac.compare_digest(given.strip().encode(), token.encode())


def clean_actor(name: str) -> str | None:
    """The declared name (1-64 printable ASCII), or None when it is not acceptable."""
    name = name.strip() or "dashboard"
    return name if _ACTOR.fullmatch(name) else None


def issue(token: str, actor: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    who = base64.urlsafe_b64encode(actor.encode()).decode().rstrip("=")
    return f"{who}.{issued}.{_sign(token, f'session|{who}|{issued}')}"


def verify(token: str, cookie: str | None, now: float | None = None) -> Session | None:
    if not cookie or cookie.count(".") != 2:
        return None
    who, issued, sig = cookie.split(".")
    if not issued.isdigit() or not hmac.compare_digest(sig, _sign(token, f"session|{who}|{issued}")):
        return None
    if (now if now is not None else time.time()) - int(issued) > SESSION_TTL_S:
        return None
    try:
        actor = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
    except ValueError:
        return None
    return Session(actor, int(issued), cookie)


def csrf_token(token: str, session: Session) -> str:
    return _sign(token, f"csrf|{session.cookie}")


def csrf_ok(token: str, session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), csrf_token(token, session).encode())


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str | None) -> bool:
    """The form was posted by a page of ours: Origin (or Referer) names this very origin."""
    if not host:
        return False
    ours = f"{scheme}://{host}".lower()
    if origin and origin != "null":
        return origin.lower() == ours
    if referer:
        return referer.lower() == ours or referer.lower().startswith(ours + "/")
    return False
