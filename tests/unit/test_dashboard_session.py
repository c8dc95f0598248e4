"""Dashboard sessions, CSRF tokens and the same-origin rule (services.api.dashboard.session)."""

from services.api.dashboard import session as s

TOKEN = "t" * 43
OTHER = "o" * 43


def test_a_session_round_trips_and_never_contains_the_token():
    cookie = s.issue(TOKEN, "alice", now=1000)
    assert TOKEN not in cookie
    found = s.verify(TOKEN, cookie, now=1001)
    assert found is not None and found.actor == "alice" and found.issued == 1000


def test_tampered_expired_or_foreign_sessions_are_refused():
    cookie = s.issue(TOKEN, "alice", now=1000)
    who, issued, sig = cookie.split(".")
    assert s.verify(TOKEN, f"{who}.{int(issued) + 1}.{sig}", now=1001) is None
    assert s.verify(TOKEN, s.issue(TOKEN, "bob", now=1000).split(".")[0] + f".{issued}.{sig}", now=1001) is None
    assert s.verify(OTHER, cookie, now=1001) is None  # the token was rotated
    assert s.verify(TOKEN, cookie, now=1000 + s.SESSION_TTL_S + 1) is None
    for junk in (None, "", "a.b", "a.b.c.d", "a.notanumber.c"):
        assert s.verify(TOKEN, junk) is None


def test_csrf_tokens_are_bound_to_the_session():
    one = s.verify(TOKEN, s.issue(TOKEN, "alice", now=1000), now=1000)
    two = s.verify(TOKEN, s.issue(TOKEN, "alice", now=1001), now=1001)
    assert s.csrf_ok(TOKEN, one, s.csrf_token(TOKEN, one))
    assert not s.csrf_ok(TOKEN, one, s.csrf_token(TOKEN, two))
    assert not s.csrf_ok(TOKEN, one, None) and not s.csrf_ok(TOKEN, one, "")


def test_same_origin_needs_origin_or_referer_naming_this_host():
    assert s.same_origin("http://127.0.0.1:8400", None, "http", "127.0.0.1:8400")
    assert not s.same_origin("http://evil.example", None, "http", "127.0.0.1:8400")
    assert not s.same_origin("http://127.0.0.1:8400.evil.example", None, "http", "127.0.0.1:8400")
    assert s.same_origin(None, "http://127.0.0.1:8400/ui/tenants/x", "http", "127.0.0.1:8400")
    assert not s.same_origin(None, "http://127.0.0.1:84001/ui/", "http", "127.0.0.1:8400")
    assert not s.same_origin(None, None, "http", "127.0.0.1:8400")
    assert not s.same_origin("null", None, "http", "127.0.0.1:8400")
    assert not s.same_origin("http://127.0.0.1:8400", None, "http", None)


def test_token_compare_and_actor_names():
    assert s.token_matches(TOKEN + "\n", TOKEN) and not s.token_matches(OTHER, TOKEN)
    assert s.clean_actor("") == "dashboard" and s.clean_actor(" alice ") == "alice"
    assert s.clean_actor("a\x00b") is None and s.clean_actor("x" * 65) is None
