"""The console in a real browser: Debian's chromium driven by Playwright, against a
`siaga112 serve` of this checkout on a free 127.0.0.1 port and the tests' own fresh database.

Every test fails when its page asks for anything outside 127.0.0.1 (such requests are aborted
and recorded) or logs an error (a CSP violation, an exception). Screenshots go to
build/screenshots/ (gitignored); docs/screenshots/ holds the copies the README shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, Response, Route

from siaga112.accounts.service import create_user
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from tests.conftest import engine_for, fresh_database

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
PASSWORD = "sandi-uji-112"
LOCAL_HOSTS = {"127.0.0.1"}
T = TypeVar("T")


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by parametrized fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last in a session: Playwright's sync API keeps an event loop running
    in the main thread from its start to the end of the session, and the other tiers' fixtures
    and async tests need that thread's loop to themselves (their session fixtures are torn
    down after Playwright's, so their teardown is unaffected)."""
    browser = [item for item in items if "/browser/" in str(item.fspath)]
    for item in browser:
        item.add_marker(pytest.mark.browser)
    others = [item for item in items if "/browser/" not in str(item.fspath)]
    items[:] = others + browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return {**browser_type_launch_args, "executable_path": executable, "args": args}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1440, "height": 900}, "locale": "id-ID"}


def off_loop(fn: Callable[[], T]) -> T:
    """Runs `fn` in a thread of its own: Playwright's sync API keeps an event loop running in
    this thread, so asyncio.run (database setup) cannot run here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    database_url: str
    admin_key: str
    env: dict[str, str]
    users: dict[str, str] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10
        )


async def _seed(database_url: str) -> str:
    async for engine in engine_for(database_url):
        from sqlalchemy.ext.asyncio import async_sessionmaker

        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            key = await create_key(
                session=session, name="browser-admin", role=Role.ADMIN, actor=system_actor("t")
            )
            await session.commit()
            return key.raw
    raise AssertionError("unreachable")


def add_operator(server: Server, username: str, extension: str, name: str) -> str:
    """An operator with a SIP account (POST /v1/operators) and a console user linked to it."""
    with server.api() as api:
        r = api.post("/v1/operators", json={"extension": extension, "name": name})
        assert r.status_code == 201, r.text
    add_user(server, username, Role.OPERATOR, name=name, extension=extension)
    return username


def add_user(
    server: Server,
    username: str,
    role: Role,
    *,
    name: str,
    extension: str | None = None,
    agency: str | None = None,
) -> None:
    async def run() -> None:
        async for engine in engine_for(server.database_url):
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                await create_user(
                    session=session,
                    username=username,
                    display_name=name,
                    role=role,
                    actor=system_actor("tests"),
                    password=PASSWORD,
                    extension=extension,
                    agency_code=agency,
                )
                await session.commit()

    off_loop(lambda: asyncio.run(run()))
    server.users[username] = PASSWORD


@pytest.fixture(scope="session")
def browser_database_url() -> Iterator[str]:
    gen = fresh_database("browser")
    url = off_loop(lambda: next(gen))
    yield url
    off_loop(lambda: next(gen, None))


@pytest.fixture(scope="session")
def server(browser_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    state = tmp_path_factory.mktemp("state")
    env = {
        **os.environ,
        "SIAGA112_DATABASE_URL": browser_database_url,
        "SIAGA112_API__HOST": "127.0.0.1",
        "SIAGA112_API__PORT": str(port),
        "SIAGA112_STATE_DIR": str(state),
        "SIAGA112_LOG_LEVEL": "WARNING",
    }
    admin_key = off_loop(lambda: asyncio.run(_seed(browser_database_url)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "siaga112", "serve", "--api-only", "--no-worker"],
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("siaga112 serve did not come up for the browser tests")
            time.sleep(0.1)
        yield Server(url=url, database_url=browser_database_url, admin_key=admin_key, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Guard:
    """What a page did that it must not: requests leaving 127.0.0.1, errors on its console,
    responses with an error status (unless the test expects that one)."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    allowed: list[tuple[int, str]] = field(default_factory=list)

    def allow(self, status: int, path: str) -> None:
        self.allowed.append((status, path))

    def route(self, route: Route, request: Request) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.outside.append(request.url)
            route.abort()

    def console(self, message: ConsoleMessage) -> None:
        # A failed load is logged as an error too; responses are checked on their own.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def response(self, response: Response) -> None:
        if response.status >= 400:
            path = urlsplit(response.url).path
            if (response.status, path) not in self.allowed:
                self.failed.append(f"{response.status} {response.url}")

    def watch(self, page: Page) -> Page:
        page.context.route("**/*", self.route)
        page.on("console", self.console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("response", self.response)
        page.set_default_timeout(10_000)
        return page

    def check(self) -> None:
        assert self.outside == [], f"the page requested outside 127.0.0.1: {self.outside}"
        assert self.errors == [], f"errors on the page's console: {self.errors}"
        assert self.failed == [], f"error responses: {self.failed}"


@pytest.fixture
def guard() -> Guard:
    return Guard()


@pytest.fixture
def page(page: Page, guard: Guard) -> Iterator[Page]:
    """pytest-playwright's page, guarded: the test fails on any request outside 127.0.0.1, on
    any console error or uncaught exception, and on any unexpected error response."""
    yield guard.watch(page)
    guard.check()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sign_in(page: Page, server: Server, username: str) -> None:
    page.goto(f"{server.url}/console/login")
    page.fill("#username", username)
    page.fill("#password", server.users[username])
    page.press("#password", "Enter")
    page.wait_for_load_state("load")
