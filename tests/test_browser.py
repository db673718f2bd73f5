"""The web console in a real headless Chromium, against a real ``callrec serve --demo``.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright's Python package through
``executable_path``; no browser is ever downloaded. When it is missing the tests install it
with apt-get if they run as root, and otherwise skip, saying why. Screenshots land in
``test-artifacts/``; ``docs/console.png`` is written from one of them when it is missing or
when ``CALLREC_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import PASSWORD, local_recording
from server import RunningServer, run_cli, running_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
DEMO_USER, DEMO_PASSWORD = "demo-admin", "demo-password"
XSS = "<img src=x onerror=alert(1)>"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


def install_chromium() -> str | None:
    """Make sure Debian's chromium is there; the reason it cannot be, else None."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)"
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install it with"
    print(f"\n{CHROMIUM} is missing: installing Debian's chromium", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if command[1] == "install" and done.returncode == 0:
            break
    if not CHROMIUM.exists():
        return f"apt-get could not install chromium: {done.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    reason = install_chromium()
    if reason is not None:
        print(f"\nSKIPPING the browser tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("browser") / "data"
    added = run_cli(data, "users", "add", "recorder", "--ops", "--password-stdin", input=PASSWORD)
    assert added.returncode == 0, added.stderr
    with running_server(data, "--demo") as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Tab:
    """One browser context (own cookies) with its page, dialogs and console messages."""

    def __init__(self, browser: Any, base: str, viewport: dict[str, int]) -> None:
        self.base = base
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda message: self.console.append(message.text))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def sign_in(self, name: str = DEMO_USER, password: str = DEMO_PASSWORD) -> None:
        self.goto("/login")
        self.page.get_by_label("User name").fill(name)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.base + "/")

    def shot(self, name: str, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.page.url).query, keep_blank_values=True)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@pytest.fixture
def tab(browser: Any, server: RunningServer) -> Iterator[Tab]:
    opened = Tab(browser, server.url, LAPTOP)
    yield opened
    opened.context.close()


def test_sign_in_search_play_and_sign_out(tab: Tab) -> None:
    page = tab.page
    tab.goto("/")
    assert urlsplit(page.url).path == "/login"  # not signed in yet
    tab.shot("01-sign-in")
    tab.sign_in()

    # Wildcard search through the form: the URL carries the query, blank fields left out.
    page.get_by_label("User name").fill("S*")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/?userName=S*")
    assert tab.query() == {"userName": ["S*"]}
    rows = page.locator("table.recordings tbody tr")
    assert rows.count() > 0
    tab.shot("02-search")

    # A second search, then back and forward through the history.
    page.get_by_label("Caller number").fill("*650*")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**callerPhoneNumber=*650*")
    assert tab.query() == {"callerPhoneNumber": ["*650*"], "userName": ["S*"]}
    page.go_back()
    page.wait_for_url("**/?userName=S*")
    assert page.get_by_label("Caller number").input_value() == ""
    page.go_forward()
    assert page.get_by_label("Caller number").input_value() == "*650*"

    # Every recording, paged through the cursor.
    page.get_by_role("link", name="All recordings").first.click()
    page.wait_for_url("**/?startTime=0")
    first_page = page.locator("td.id a").all_inner_texts()
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url("**cursor=*")
    second_page = page.locator("td.id a").all_inner_texts()
    assert first_page
    assert second_page
    assert not set(first_page) & set(second_page)
    page.go_back()
    page.wait_for_url("**/?startTime=0")

    # Open a recording: metadata, the timeline picture, a player and a download link.
    recording_id = first_page[0]
    page.get_by_role("link", name=recording_id, exact=True).click()
    page.wait_for_url(f"**/recordings/{recording_id}")
    assert page.get_by_role("heading", name=f"Recording {recording_id}").is_visible()
    assert page.locator("svg.timeline-svg rect.bar").count() >= 1
    audio = page.locator("audio.player").first
    src = audio.get_attribute("src")
    assert src is not None
    assert src.startswith(f"{tab.base}/api/v2/recordings/{recording_id}/play/")
    download = page.get_by_role("link", name="Download").first
    assert download.get_attribute("href") == src
    assert download.get_attribute("download")
    fetched = tab.context.request.get(src, headers={"Range": "bytes=0-11"})
    assert fetched.status == 206
    assert fetched.body()[:4] == b"RIFF"

    # Play (muted) and seek: the element learns the duration and currentTime moves.
    audio.evaluate("a => { a.muted = true; return a.play(); }")
    page.wait_for_function(
        "a => Number.isFinite(a.duration) && a.duration > 1", arg=audio.element_handle()
    )
    duration = audio.evaluate("a => a.duration")
    target = round(duration / 2, 1)
    audio.evaluate(
        "(a, t) => new Promise(done => { a.addEventListener('seeked', done, {once: true});"
        " a.currentTime = t; })",
        target,
    )
    assert audio.evaluate("a => a.currentTime") >= target - 0.05
    page.wait_for_function(
        "([a, t]) => a.currentTime > t + 0.2", arg=[audio.element_handle(), target]
    )
    audio.evaluate("a => a.pause()")
    # Seeking from the keyboard with the skip buttons.
    page.get_by_role("button", name="Back 10 s").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("a => a.currentTime < 0.5", arg=audio.element_handle())
    update_readme_screenshot(tab.shot("03-recording", full_page=True))

    # Sign out: back to the sign-in page, and the pages are closed again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login?reason=signed-out")
    assert page.get_by_text("You are signed out.").is_visible()
    tab.goto(f"/recordings/{recording_id}")
    assert urlsplit(page.url).path == "/login"
    assert tab.context.request.get(src).status == 401
    assert tab.dialogs == []
    assert tab.csp_violations() == []


def update_readme_screenshot(shot: Path) -> None:
    """docs/console.png, the README's picture: written when missing or asked for."""
    target = ROOT / "docs" / "console.png"
    if not target.exists() or os.environ.get("CALLREC_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, target)


def test_xss_probe(tab: Tab, server: RunningServer) -> None:
    hostile = local_recording(
        "xss-probe",
        callerPhoneNumber=XSS,
        dialedPhoneNumber='"><script>alert(2)</script>',
        eventHistory=[
            {
                "occurredAt": "2013-05-17T19:45:40Z",
                "event": "Joined",
                "contact": {
                    "type": "Agent",
                    "userName": "pat'o",
                    "firstName": 'Pat "<svg onload=alert(3)>"',
                    "lastName": "O'Brien",
                },
            }
        ],
    )
    posted = httpx.post(
        f"{server.url}/api/v2/ops/contact-centers/demo/recordings",
        json=hostile,
        auth=("recorder", PASSWORD),
        timeout=10,
    )
    assert posted.json() == {"statusCode": 0}
    page = tab.page
    tab.sign_in()
    page.get_by_label("Caller number").fill("*onerror*")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**callerPhoneNumber=*onerror*")
    caller = page.locator("table.recordings td.number").first
    assert caller.inner_text() == XSS
    assert page.get_by_text('Pat "<svg onload=alert(3)>" O\'Brien').count() == 1
    tab.shot("04-xss-search")
    page.get_by_role("link", name="xss-probe").click()
    page.wait_for_url("**/recordings/xss-probe")
    assert page.get_by_text(XSS, exact=True).count() >= 1
    assert page.get_by_text('"><script>alert(2)</script>', exact=True).count() >= 1
    page.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert page.locator("img[src=x], svg[onload], script:not([src])").count() == 0
    assert tab.dialogs == []
    assert tab.csp_violations() == []
    tab.shot("05-xss-recording", full_page=True)


def test_phone_layout_and_keyboard(browser: Any, server: RunningServer) -> None:
    tab = Tab(browser, server.url, PHONE)
    try:
        page = tab.page
        tab.goto("/login")
        # Keyboard only: the user name field has focus, Tab moves on, Enter submits.
        page.wait_for_function("document.activeElement.id === 'username'")
        page.keyboard.type(DEMO_USER)
        page.keyboard.press("Tab")
        page.keyboard.type(DEMO_PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(server.url + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.get_by_label("Dialed number").fill("*")
        page.get_by_label("Dialed number").press("Enter")
        page.wait_for_url("**/?dialedPhoneNumber=*")
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(fits)
        tab.shot("06-phone-search")
        page.locator("#results-heading").scroll_into_view_if_needed()
        tab.shot("07-phone-results")
        page.locator("td.id a").first.click()
        page.wait_for_url("**/recordings/*")
        assert page.evaluate(fits)  # the timeline scrolls inside its own box
        assert page.locator("svg.timeline-svg").is_visible()
        tab.shot("08-phone-recording", full_page=True)
        assert tab.csp_violations() == []
    finally:
        tab.context.close()
