"""The web console in-process: sessions, CSRF, tenancy, escaping, CSP, errors, root prefix."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.app import create_app
from callrec.auth import hash_password
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import User
from callrec.web import sessions as web_sessions
from callrec.web.timeline import build_timeline
from callrec.web.views import duration, size
from conftest import PASSWORD, basic, local_recording

HTML = {"Accept": "text/html,application/xhtml+xml"}
RECORDER = basic("recorder")
OPS = "/api/v2/ops/contact-centers/{ccid}/recordings"
XSS = "<img src=x onerror=alert(1)>"
MEDIA = "call.wav"
AUDIO = b"RIFF" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every sign-in fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def post(client: TestClient, ccid: str, *docs: dict[str, Any]) -> None:
    response = client.post(OPS.format(ccid=ccid), json=list(docs), headers=RECORDER)
    assert response.json() == {"statusCode": 0}, response.text


def upload(client: TestClient, ccid: str, rec_id: str, data: bytes = AUDIO) -> None:
    url = f"{OPS.format(ccid=ccid)}/{rec_id}/media/{MEDIA}"
    response = client.put(url, content=data, headers={**RECORDER, "Content-Type": "audio/wav"})
    assert response.status_code == 200, response.text


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """cc1: rec-1 (with audio) .. rec-3, and a hostile one; cc2: its own rec-1 and cc2-only."""
    post(
        client,
        "cc1",
        local_recording("rec-1", mediaFiles=[{"mediaId": MEDIA, "type": "audio/wav"}]),
        local_recording("rec-2", startTime="2013-05-18T10:00:00Z", stopTime="2013-05-18T10:05:00Z"),
        local_recording("rec-3", startTime="2013-05-19T10:00:00Z", stopTime="2013-05-19T10:05:00Z"),
    )
    upload(client, "cc1", "rec-1")
    post(
        client,
        "cc2",
        local_recording("rec-1", callerPhoneNumber="+1 222 000 2222"),
        local_recording("cc2-only", callerPhoneNumber="+1 222 000 2223"),
    )
    return client


def form_token(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token in the form"
    return match.group(1)


def sign_in(
    client: TestClient, name: str, password: str = PASSWORD, next_url: str = "/"
) -> httpx.Response:
    form = client.get("/login", headers=HTML)
    assert form.status_code == 200, form.text
    data = {"username": name, "password": password, "csrf": form_token(form.text), "next": next_url}
    return client.post("/login", data=data, headers=HTML, follow_redirects=False)


def signed_in(client: TestClient, name: str) -> TestClient:
    response = sign_in(client, name)
    assert response.status_code == 303, response.text
    return client


def other_client(client: TestClient) -> TestClient:
    """A second browser on the same running app (its own cookie jar)."""
    return TestClient(client.app)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def text_of(page: str) -> str:
    """The page's text with tags removed and entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def assert_csp(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


class Markup(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_no_inline_code(page: str) -> None:
    """Nothing the policy would block: no inline script, style or event handler."""
    for tag, attrs in Markup(page).tags:
        assert tag != "style"
        assert tag != "script" or attrs.get("src"), "inline script"
        assert "style" not in attrs
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        for name in ("href", "src", "action"):
            assert not (attrs.get(name) or "").lower().startswith("javascript:")


# --------------------------------------------------------------------------- sign-in


def test_pages_need_a_session(seeded: TestClient) -> None:
    for path in ("/", "/?callerPhoneNumber=*", "/recordings/rec-1"):
        response = seeded.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code == 303
        target = urlsplit(response.headers["location"])
        assert target.path == "/login"
        assert parse_qs(target.query)["next"] == [path]


def test_sign_in_sets_a_strict_http_only_cookie_and_goes_back(seeded: TestClient) -> None:
    response = sign_in(seeded, "alice", next_url="/?userName=Kim")
    assert response.status_code == 303
    assert response.headers["location"] == "/?userName=Kim"
    cookie = set_cookies(response)["callrec_session"]
    flags = [flag.strip().lower() for flag in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # plain HTTP here; see the HTTPS test
    max_age = int(next(f for f in flags if f.startswith("max-age=")).split("=")[1])
    assert max_age == int(Settings.model_fields["session_seconds"].default)
    page = seeded.get("/?userName=Kim", headers=HTML)
    assert page.status_code == 200
    assert "rec-1" in page.text
    assert "Alice Tester" in text_of(page.text)


def test_wrong_password_and_unknown_user_are_refused(seeded: TestClient) -> None:
    for name, password in (("alice", "wrong"), ("nobody", PASSWORD), ("", "")):
        response = sign_in(seeded, name, password)
        assert response.status_code == 422
        assert "callrec_session" not in set_cookies(response)
        assert "Invalid user name or password" in response.text
        assert_csp(response)
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_next_never_leaves_the_console(seeded: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/login"):
        response = sign_in(other_client(seeded), "alice", next_url=target)
        assert response.headers["location"] == "/", target


def test_signed_in_user_skips_the_login_form(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    response = seeded.get("/login?next=/recordings/rec-1", headers=HTML, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/recordings/rec-1")


@pytest.mark.parametrize(("name", "role"), [("sam", "supervisor"), ("recorder", "ops")])
def test_only_admins_get_a_session(seeded: TestClient, name: str, role: str) -> None:
    response = sign_in(seeded, name)
    assert response.status_code == 403
    assert "Only Contact Center Admins can view recordings" in response.text
    assert "callrec_session" not in set_cookies(response)
    assert_csp(response)
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 303


# --------------------------------------------------------------------------- CSRF


def test_login_needs_the_form_token(seeded: TestClient) -> None:
    seeded.get("/login", headers=HTML)  # sets the login cookie
    for token in (None, "", "0" * 64):
        data = {"username": "alice", "password": PASSWORD, "next": "/"}
        if token is not None:
            data["csrf"] = token
        response = seeded.post("/login", data=data, headers=HTML, follow_redirects=False)
        assert response.status_code == 403
        assert "callrec_session" not in set_cookies(response)


def test_login_token_is_bound_to_the_login_cookie(seeded: TestClient) -> None:
    token = form_token(seeded.get("/login", headers=HTML).text)
    browser = other_client(seeded)  # an attacker's page cannot send the victim's cookie
    browser.get("/login", headers=HTML)
    data = {"username": "alice", "password": PASSWORD, "csrf": token, "next": "/"}
    response = browser.post("/login", data=data, headers=HTML, follow_redirects=False)
    assert response.status_code == 403


def test_cross_site_posts_are_refused(seeded: TestClient) -> None:
    token = form_token(seeded.get("/login", headers=HTML).text)
    data = {"username": "alice", "password": PASSWORD, "csrf": token, "next": "/"}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "http://[testserver"},  # not a URL at all
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = seeded.post(
            "/login", data=data, headers={**HTML, **headers}, follow_redirects=False
        )
        assert response.status_code == 403
    same = seeded.post(
        "/login",
        data=data,
        headers={**HTML, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_sign_out_needs_the_form_token(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    response = seeded.post("/logout", data={"csrf": "forged"}, headers=HTML)
    assert response.status_code == 403
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 200


def test_sign_out_ends_the_session_even_for_a_copied_cookie(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    stolen = seeded.cookies["callrec_session"]
    page = seeded.get("/", headers=HTML)
    response = seeded.post(
        "/logout", data={"csrf": form_token(page.text)}, headers=HTML, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login?reason=signed-out"
    assert "max-age=0" in set_cookies(response)["callrec_session"].lower()
    assert "You are signed out" in seeded.get(response.headers["location"], headers=HTML).text
    replay = other_client(seeded)
    replay.cookies.set("callrec_session", stolen)
    assert replay.get("/", headers=HTML, follow_redirects=False).status_code == 303
    assert replay.get("/api/v2/recordings/rec-1").status_code == 401


def test_sign_out_confirmation_page(seeded: TestClient) -> None:
    assert seeded.get("/logout", headers=HTML, follow_redirects=False).status_code == 303
    signed_in(seeded, "alice")
    page = seeded.get("/logout", headers=HTML)
    assert page.status_code == 200
    assert 'action="/logout"' in page.text
    assert_csp(page)


# --------------------------------------------------------------------------- expiry


def test_sessions_expire(seeded: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    signed_in(seeded, "alice")
    manager: web_sessions.SessionManager = seeded.app.state.sessions  # type: ignore[attr-defined]
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 200
    later = manager.clock() + manager.lifetime + 1
    monkeypatch.setattr(manager, "clock", lambda: later)
    response = seeded.get("/recordings/rec-1", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert "reason=expired" in response.headers["location"]
    assert seeded.get("/api/v2/recordings/rec-1").status_code == 401
    login = seeded.get(response.headers["location"], headers=HTML)
    assert "Your session has ended" in login.text


def test_session_lifetime_comes_from_the_setting(settings: Settings, services: Services) -> None:
    short = settings.model_copy(update={"session_seconds": 120.0})
    app = create_app(short, dataclasses.replace(services, settings=short))
    with TestClient(app) as browser:
        response = sign_in(browser, "alice")
        assert "max-age=120;" in set_cookies(response)["callrec_session"].lower()
        assert app.state.sessions.lifetime == 120.0


def test_password_change_or_removal_ends_sessions(seeded: TestClient, services: Services) -> None:
    signed_in(seeded, "alice")
    services.store.put_user(User("alice", hash_password("new-pw"), "admin", "cc1"))
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 303
    services.store.put_user(User("alice", hash_password(PASSWORD), "admin", "cc1"))
    signed_in(seeded, "alice")
    services.store.delete_user("alice")
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 303
    assert seeded.get("/api/v2/recordings/rec-1").status_code == 401


def test_role_is_checked_on_every_request(seeded: TestClient, services: Services) -> None:
    signed_in(seeded, "alice")
    user = services.store.get_user("alice")
    assert user is not None
    services.store.put_user(dataclasses.replace(user, role="supervisor"))
    page = seeded.get("/", headers=HTML)
    assert page.status_code == 403
    assert "Only Contact Center Admins can view recordings" in page.text
    assert seeded.get("/api/v2/recordings/rec-1").status_code == 403
    services.store.put_user(dataclasses.replace(user, role="ops", ccid=None))
    assert seeded.get("/", headers=HTML, follow_redirects=False).status_code == 303
    assert seeded.get("/api/v2/recordings/rec-1?contactCenterId=cc2").status_code == 401


def test_tampered_cookies_are_ignored(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    token = seeded.cookies["callrec_session"]
    payload, signature = token.split(".")
    forged = [
        "garbage",
        f"{payload}.{signature[:-2]}xx",
        f"{payload}x.{signature}",
        "." * 3000,
        # bob's name in alice's signed envelope
        web_sessions._b64(b'["bob",99999999999999,"x"]') + "." + signature,
    ]
    for value in forged:
        browser = other_client(seeded)
        browser.cookies.set("callrec_session", value)
        assert browser.get("/", headers=HTML, follow_redirects=False).status_code == 303
        assert browser.get("/api/v2/recordings/rec-1").status_code == 401


# --------------------------------------------------------------------------- the API


def test_cookie_reads_the_api_like_basic_auth(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    found = seeded.get("/api/v2/recordings", params={"startTime": "0"})
    assert found.status_code == 200
    assert [r["id"] for r in found.json()["recordings"]] == ["rec-1", "rec-2", "rec-3"]
    same = seeded.get("/api/v2/recordings", params={"startTime": "0"}, headers=basic("alice"))
    assert found.json() == same.json()
    assert seeded.get("/api/v2/recordings/rec-1").json()["recording"]["id"] == "rec-1"
    played = seeded.get(f"/api/v2/recordings/rec-1/play/{MEDIA}", headers={"Range": "bytes=0-3"})
    assert (played.status_code, played.content) == (206, b"RIFF")
    assert seeded.get("/api/v2/me").json()["user"]["userName"] == "alice"


def test_cookie_never_writes(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    url = OPS.format(ccid="cc1")
    assert seeded.post(url, json=local_recording("new")).status_code == 401
    assert seeded.put(f"{url}/rec-1/media/x.wav", content=b"x").status_code == 401
    assert seeded.delete(f"{url}/rec-1").status_code == 401
    assert seeded.get(f"{url}/rec-1").status_code == 403  # ops reads need an OPS account
    assert seeded.get("/api/v2/recordings/rec-1").status_code == 200


def test_tenants_stay_isolated(seeded: TestClient) -> None:
    bob = signed_in(other_client(seeded), "bob")
    everything = bob.get("/?startTime=0", headers=HTML)
    assert everything.status_code == 200
    assert "cc2-only" in everything.text
    assert "rec-2" not in everything.text
    assert "466-8888" not in everything.text  # rec-1 of cc1's caller number
    own = bob.get("/recordings/rec-1", headers=HTML)
    assert own.status_code == 200
    assert "+1 222 000 2222" in own.text
    assert "466-8888" not in own.text
    missing = bob.get("/recordings/rec-2", headers=HTML)
    assert missing.status_code == 404
    assert "Recording not found" in missing.text
    assert bob.get("/api/v2/recordings/rec-2").status_code == 404
    assert bob.get(f"/api/v2/recordings/rec-1/play/{MEDIA}").status_code == 404
    api = bob.get("/api/v2/recordings", params={"startTime": "0", "contactCenterId": "cc1"})
    assert [r["id"] for r in api.json()["recordings"]] == ["cc2-only", "rec-1"]
    assert all("466" not in r.get("callerPhoneNumber", "") for r in api.json()["recordings"])


# --------------------------------------------------------------------------- search page


def test_search_form_labels_and_help(seeded: TestClient) -> None:
    page = signed_in(seeded, "alice").get("/", headers=HTML).text
    for field_id, name, label in (
        ("caller", "callerPhoneNumber", "Caller number"),
        ("dialed", "dialedPhoneNumber", "Dialed number"),
        ("start", "startTime", "Started after"),
        ("end", "endTime", "Ended before"),
        ("user", "userName", "User name"),
    ):
        assert f'<label for="{field_id}">{label}</label>' in page
        assert re.search(rf'<input id="{field_id}" name="{name}"', page)
    text = text_of(page)
    assert "* stands for any run of characters" in text
    assert "AND , in capitals, joins names" in text
    assert 'role="search"' in page


def test_search_results_table_links_and_url(seeded: TestClient) -> None:
    page = signed_in(seeded, "alice").get("/?callerPhoneNumber=*4668*", headers=HTML)
    assert page.status_code == 200
    assert 'value="*4668*"' in page.text  # the form shows the URL's query
    for heading in ("Start (UTC)", "Duration", "Caller", "Dialed", "Participants", "Media files"):
        assert f'<th scope="col">{heading}</th>' in page.text
    assert '<a href="/recordings/rec-1">rec-1</a>' in page.text
    row = text_of(page.text.split('href="/recordings/rec-1"')[1].split("</tr>")[0])
    assert "2013-05-17 19:45:32" in row
    assert "2:30:04" in row  # duration
    assert "+1 (650) 466-8888" in row
    assert "Kim Lee" in row
    assert "1 · audio/wav" in row


def test_search_pages_through_the_cursor(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    seen = []
    url: str | None = "/?startTime=0&limit=2"
    while url:
        page = seeded.get(html.unescape(url), headers=HTML)
        assert page.status_code == 200
        seen += re.findall(r'<a href="/recordings/([^"]+)">', page.text)
        match = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', page.text)
        url = match.group(1) if match else None
        if url:
            assert "cursor=" in url
            assert "startTime=0" in url
    assert seen == ["rec-1", "rec-2", "rec-3"]


def test_blank_fields_are_dropped_from_the_url(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    response = seeded.get(
        "/?callerPhoneNumber=&dialedPhoneNumber=+&startTime=0&endTime=&userName=",
        headers=HTML,
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/?startTime=0")
    empty = seeded.get("/?callerPhoneNumber=&userName=", headers=HTML, follow_redirects=False)
    assert empty.headers["location"] == "/"


def test_empty_and_error_states(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    start = seeded.get("/", headers=HTML)
    assert "Fill in at least one field" in start.text
    none = seeded.get("/?callerPhoneNumber=999", headers=HTML)
    assert none.status_code == 200
    assert "No recordings match" in none.text
    bad = seeded.get("/?startTime=yesterday&userName=kim", headers=HTML)
    assert bad.status_code == 400
    api = seeded.get("/api/v2/recordings?startTime=yesterday&userName=kim", headers=basic("alice"))
    assert html.escape(api.json()["statusMessage"], quote=False) in bad.text
    assert "GWS statusCode 2" in bad.text
    assert 'value="yesterday"' in bad.text  # the form keeps what was typed
    dangling = seeded.get("/?userName=kim%20AND", headers=HTML)
    assert dangling.status_code == 400
    assert "&#39;AND&#39; must stand between two names" in dangling.text
    cursor = seeded.get("/?startTime=0&cursor=nonsense", headers=HTML)
    assert (cursor.status_code, "cursor is not valid" in cursor.text) == (400, True)


# --------------------------------------------------------------------------- recording page


def test_recording_page(seeded: TestClient) -> None:
    page = signed_in(seeded, "alice").get("/recordings/rec-1", headers=HTML)
    assert page.status_code == 200
    text = text_of(page.text)
    for expected in ("+1 (650) 466-8888", "+14155551234", "2013-05-17 19:45:32", "usw1"):
        assert expected in text
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in svg
    assert re.search(r'<rect class="bar[^"]*" x="[0-9.]+" y="[0-9.]+" width="[0-9.]+"', svg)
    assert "Kim Lee" in svg
    play = f"http://testserver/api/v2/recordings/rec-1/play/{MEDIA}"
    assert f'<audio class="player" controls preload="metadata" src="{play}"' in page.text
    assert f'href="{play}" download="{MEDIA}"' in page.text
    assert_no_inline_code(page.text)


def test_timeline_draws_every_participant(seeded: TestClient) -> None:
    def event(at: str, kind: str, name: str, contact_type: str = "Agent") -> dict[str, Any]:
        return {
            "occurredAt": at,
            "event": kind,
            "contact": {"type": contact_type, "userName": name, "firstName": name.title()},
        }

    doc = local_recording(
        "busy",
        stopTime="2013-05-17T20:00:00Z",
        eventHistory=[
            event("2013-05-17T19:45:32Z", "Joined", "ann", "External"),
            event("2013-05-17T19:46:00Z", "Joined", "bo"),
            event("2013-05-17T19:50:00Z", "Held", "bo"),
            event("2013-05-17T19:52:00Z", "Left", "bo"),
            event("2013-05-17T19:55:00Z", "Joined", "cy", "User"),
            event("2013-05-17T19:58:00Z", "Left", "ann", "External"),
        ],
    )
    post(seeded, "cc1", doc)
    svg = signed_in(seeded, "alice").get("/recordings/busy", headers=HTML).text.split("<svg")[1]
    lanes = re.findall(r'<g class="lane (kind-[a-z]+)">', svg)
    assert lanes == ["kind-external", "kind-agent", "kind-user"]
    assert len(re.findall(r'<rect class="bar', svg)) == 3
    assert len(re.findall(r'<path class="mark"', svg)) == 1
    assert "Bo: Held at 4:28" in svg
    assert "Cy: joined at 9:28, left at 14:28" in svg


def test_recording_page_not_found(seeded: TestClient) -> None:
    signed_in(seeded, "alice")
    for path in ("/recordings/nope", "/recordings/a%00b", "/recordings/%FF"):
        page = seeded.get(path, headers=HTML)
        assert page.status_code == 404, path
        assert "Recording not found" in page.text
        assert_csp(page)
    other = seeded.get("/recordings/..%2F..%2Fetc", headers=HTML)
    assert (other.status_code, other.headers["content-type"][:9]) == (404, "text/html")


def test_timeline_edge_cases() -> None:
    start, stop = "2013-05-17T19:00:00.000+0000", "2013-05-17T19:10:00.000+0000"

    def event(at: str, kind: str, name: str) -> dict[str, Any]:
        return {"occurredAt": at, "event": kind, "contact": {"type": "Agent", "userName": name}}

    assert build_timeline({"id": "x", "startTime": start}) is None
    assert build_timeline({"id": "x", "eventHistory": "nonsense"}) is None
    garbage = [None, 1, {"event": "Joined"}, {"occurredAt": "never", "contact": {}}]
    assert build_timeline({"id": "x", "startTime": start, "eventHistory": garbage}) is None
    # A Left without a Joined starts at the beginning; a call in progress runs on.
    timeline = build_timeline(
        {
            "id": "x",
            "startTime": start,
            "eventHistory": [
                event("2013-05-17T19:05:00.000+0000", "Left", "leaver"),
                event("2013-05-17T19:02:00.000+0000", "Joined", "joiner"),
            ],
        }
    )
    assert timeline is not None
    joiner, leaver = timeline.lanes  # in order of their first event
    assert (joiner.contact.name, leaver.contact.name) == ("joiner", "leaver")
    assert leaver.bars[0].x == timeline.plot_left
    assert not leaver.bars[0].ongoing
    assert joiner.bars[0].ongoing
    assert joiner.bars[0].x + joiner.bars[0].width == pytest.approx(timeline.plot_right, abs=0.2)
    # Ticks stay few and readable for any length of call.
    for minutes in (0, 1, 7, 95, 600):
        end = f"2013-05-17T{19 + minutes // 60:02}:{minutes % 60:02}:00.000+0000"
        long = build_timeline(
            {
                "id": "x",
                "startTime": start,
                "stopTime": end if minutes else stop,
                "eventHistory": [event(start, "Joined", "a")],
            }
        )
        assert long is not None
        assert 1 <= len(long.ticks) <= 7
        assert all(timeline.plot_left <= t.x <= timeline.plot_right for t in long.ticks)
    # Times are whatever the recorder sent: a call "from year 1 to 9999" is drawn at once.
    for first in ("0001-01-01T00:00:00.000+0000", "2013-05-16T19:00:00.000+0000"):
        ages = build_timeline(
            {
                "id": "x",
                "startTime": first,
                "stopTime": "9999-12-31T23:59:59.999+0000",
                "eventHistory": [event(start, "Joined", "a")],
            }
        )
        assert ages is not None
        assert 1 <= len(ages.ticks) <= 7


def test_display_values() -> None:
    assert [size(v) for v in ("0", "999", "128044", "4800000", 7, "n/a")] == [
        "0 bytes",
        "999 bytes",
        "128 kB",
        "4.8 MB",
        "7 bytes",
        "n/a",
    ]
    assert [duration(ms) for ms in (None, -1, 0, 59_999, 61_000, 3_723_000)] == [
        "",
        "",
        "0:00",
        "0:59",
        "1:01",
        "1:02:03",
    ]


def test_odd_recordings_still_render(seeded: TestClient) -> None:
    odd = local_recording(
        "odd",
        stopTime=None,
        eventHistory=[{"occurredAt": "2013-05-17T19:46:00Z", "event": "Joined"}, {"x": 1}],
        mediaFiles=[
            {"mediaId": "secret.wav", "type": "audio/wav", "pkcs7": "MIIB", "size": "lots"},
            {"mediaId": "clip.mp4", "type": "video/mp4", "duration": "61000"},
        ],
        nested={"deep": [1, {"two": None}]},
    )
    del odd["stopTime"]
    post(seeded, "cc1", odd)
    page = signed_in(seeded, "alice").get("/recordings/odd", headers=HTML)
    assert page.status_code == 200
    text = text_of(page.text)
    assert "in progress" in text
    assert "can be downloaded, not played here" in text
    assert '<video class="player"' in page.text
    assert '{"deep": [1, {"two": null}]}' in text
    found = seeded.get("/?callerPhoneNumber=*4668*", headers=HTML)
    assert "in progress" in text_of(found.text)


# --------------------------------------------------------------------------- escaping


def test_hostile_values_render_as_text(seeded: TestClient) -> None:
    hostile = local_recording(
        "hostile",
        callerPhoneNumber=XSS,
        dialedPhoneNumber='"><script>alert(2)</script>',
        callType="</td><b onmouseover=alert(3)>",
        note="{{ 7*7 }}",
        eventHistory=[
            {
                "occurredAt": "2013-05-17T19:45:40Z",
                "event": "Joined",
                "contact": {
                    "type": 'Agent" onload="alert(4)',
                    "userName": "o'brien",
                    "firstName": 'Pat "The Cat"',
                    "lastName": "O'Brien <b>",
                },
            }
        ],
        mediaFiles=[{"mediaId": 'a"b<c>.wav', "type": "audio/wav"}],
    )
    post(seeded, "cc1", hostile)
    signed_in(seeded, "alice")
    for path in ("/?callerPhoneNumber=*onerror*", "/recordings/hostile"):
        page = seeded.get(path, headers=HTML)
        assert page.status_code == 200
        assert XSS not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
        assert "<script>alert" not in page.text
        assert "<b onmouseover" not in page.text
        assert 'Pat "The Cat"' not in page.text
        assert "Pat &#34;The Cat&#34; O&#39;Brien &lt;b&gt;" in page.text
        assert_no_inline_code(page.text)
        assert XSS in text_of(page.text)
    detail = seeded.get("/recordings/hostile", headers=HTML).text
    assert "{{ 7*7 }}" in text_of(detail)  # not evaluated as a template
    assert "a%22b%3Cc%3E.wav" in detail  # the play URL is encoded
    assert 'download="a&#34;b&lt;c&gt;.wav"' in detail


# --------------------------------------------------------------------------- headers, errors


def test_csp_on_every_page(seeded: TestClient) -> None:
    anonymous = other_client(seeded)
    responses = [
        anonymous.get("/login", headers=HTML),
        anonymous.get("/static/console.css"),
        anonymous.get("/static/console.js"),
        anonymous.get("/no/such/page", headers=HTML),
        sign_in(anonymous, "alice", "wrong"),
    ]
    signed_in(seeded, "alice")
    responses += [
        seeded.get(path, headers=HTML)
        for path in (
            "/",
            "/?startTime=0",
            "/?startTime=bad",
            "/recordings/rec-1",
            "/recordings/none",
            "/logout",
        )
    ]
    for response in responses:
        assert_csp(response)
        if response.headers["content-type"].startswith("text/html"):
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-frame-options"] == "DENY"
            assert_no_inline_code(response.text)


def test_static_files_ship_with_the_package(client: TestClient) -> None:
    css = client.get("/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = client.get("/static/console.js")
    assert js.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert client.get("/static/favicon.svg").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_api_clients_keep_the_gws_404(client: TestClient) -> None:
    for path in ("/", "/no/such/page", "/api/v2/nothing"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"statusCode": 6, "statusMessage": "Resource not found"}
    page = client.get("/no/such/page", headers=HTML)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text
    assert client.get("/api/v2/nothing", headers=HTML).json()["statusCode"] == 6
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/login", "/logout", "/recordings/{recording_id}"} & set(paths)


def test_unexpected_failures_render_a_page_without_details(
    seeded: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_in(seeded, "alice")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SELECT secret FROM /var/lib/callrec")

    async def broken_async(*args: Any, **kwargs: Any) -> Any:
        broken()

    monkeypatch.setattr(services.store, "search_stored", broken)
    monkeypatch.setattr(services.store, "get", broken)
    monkeypatch.setattr(services.store, "peek_stored", broken)  # reads on the event loop
    monkeypatch.setattr(services.store, "fetch_stored", broken_async)
    for path in ("/?startTime=0", "/recordings/rec-1"):
        page = seeded.get(path, headers=HTML)
        assert page.status_code == 500
        assert "Something went wrong" in page.text
        for leak in ("Traceback", "SELECT", "/var", "RuntimeError"):
            assert leak not in page.text
        assert_csp(page)


def test_malformed_login_posts_render_pages(seeded: TestClient) -> None:
    for body, content_type in (
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"--x\r\n", "multipart/form-data; boundary=x"),
        (b"a=" + b"b" * 200_000, "application/x-www-form-urlencoded"),
        (b"{}", "application/json"),
    ):
        response = seeded.post(
            "/login", content=body, headers={**HTML, "Content-Type": content_type}
        )
        assert 400 <= response.status_code < 500, (body[:10], response.status_code)
        assert response.headers["content-type"].startswith("text/html")
        assert "Traceback" not in response.text


# --------------------------------------------------------------------------- deployment


@pytest.fixture
def prefixed(settings: Settings, services: Services) -> Iterator[TestClient]:
    cloud = settings.model_copy(update={"root_path": "/cloud-web"})
    with TestClient(create_app(cloud, dataclasses.replace(services, settings=cloud))) as browser:
        yield browser


def test_root_prefix(prefixed: TestClient) -> None:
    post_url = "/cloud-web" + OPS.format(ccid="cc1")
    body = local_recording("rec-9", mediaFiles=[{"mediaId": MEDIA}])
    assert prefixed.post(post_url, json=body, headers=RECORDER).json() == {"statusCode": 0}
    assert prefixed.get("/login", headers=HTML).status_code == 404
    bare = prefixed.get("/cloud-web", headers=HTML, follow_redirects=False)
    assert bare.headers["location"].endswith("/cloud-web/")
    login = prefixed.get("/cloud-web/", headers=HTML, follow_redirects=False)
    assert login.headers["location"] == "/cloud-web/login?next=%2Fcloud-web%2F"
    form = prefixed.get("/cloud-web/login", headers=HTML)
    assert 'action="/cloud-web/login"' in form.text
    assert 'href="/cloud-web/static/console.css' in form.text
    assert "path=/cloud-web/login" in set_cookies(form)["callrec_login"].lower()
    data = {"username": "alice", "password": PASSWORD, "csrf": form_token(form.text)}
    signed = prefixed.post("/cloud-web/login", data=data, follow_redirects=False)
    assert signed.headers["location"] == "/cloud-web/"
    assert "path=/cloud-web/" in set_cookies(signed)["callrec_session"].lower()
    page = prefixed.get("/cloud-web/?startTime=0", headers=HTML)
    assert '<a href="/cloud-web/recordings/rec-9">rec-9</a>' in page.text
    detail = prefixed.get("/cloud-web/recordings/rec-9", headers=HTML)
    assert "http://testserver/cloud-web/api/v2/recordings/rec-9/play/call.wav" in detail.text
    assert prefixed.get("/cloud-web/static/console.css").status_code == 200
    assert prefixed.get("/cloud-web/api/v2/recordings/rec-9").status_code == 200  # cookie


def test_https_public_url_makes_cookies_secure(settings: Settings, services: Services) -> None:
    public = settings.model_copy(update={"public_url": "https://rec.example.com"})
    app = create_app(public, dataclasses.replace(services, settings=public))
    with TestClient(app, base_url="https://rec.example.com") as browser:
        form = browser.get("/login", headers=HTML)
        assert "secure" in set_cookies(form)["callrec_login"].lower()
        assert (
            "media-src 'self' https://rec.example.com;" in form.headers["content-security-policy"]
        )
        response = sign_in(browser, "alice")
        cookie = SimpleCookie(set_cookies(response)["callrec_session"])
        assert cookie["callrec_session"]["secure"]
