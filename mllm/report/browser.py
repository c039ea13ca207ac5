"""Open a report in headless Chromium and check it the way a reader would see it.

Talks the Chrome DevTools protocol over `--remote-debugging-pipe` (file descriptors 3 and 4,
NUL-terminated JSON), so it needs no websocket library and no browser download: only Debian's
`chromium`. The launch flags are the ones that keep Chromium off the network
(../shared/reference/ENVIRONMENT.md); every request the page makes is recorded, so a page that
reaches for the network fails the check instead of silently depending on it.

    python -m mllm.report.browser results/report/index.html --screenshot results/report/screenshot.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
LOCAL_SCHEMES = ("file:", "data:", "about:")

# Evaluated in the page once it has loaded.
PAGE_FACTS = """(() => {
  const tables = [...document.querySelectorAll('table')];
  const images = [...document.images];
  return {
    title: document.title,
    tables: tables.length,
    empty_tables: tables.filter(t => !t.tBodies.length || !t.tBodies[0].rows.length)
      .map(t => (t.closest('[id]') || {id: '?'}).id),
    images: images.length,
    broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    sections: [...document.querySelectorAll('h2[id]')].map(h => h.id),
  };
})()"""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What the browser saw: the page's own facts, console errors and every request URL."""

    facts: dict
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def remote_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]

    def problems(self) -> list[str]:
        found = [f"console error: {message}" for message in self.console_errors]
        found += [f"request leaves the machine: {url}" for url in self.remote_requests]
        found += [f"table without rows in section {s!r}" for s in self.facts["empty_tables"]]
        found += [f"image did not load: {alt!r}" for alt in self.facts["broken_images"]]
        return found


class DevTools:
    """A minimal CDP client over Chromium's debugging pipe (one page session, flat mode)."""

    def __init__(self, chromium: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="report-browser-")
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def wire_pipe():  # Chromium reads commands on fd 3 and writes replies on fd 4
            # Copies first: a pipe end may already be fd 3 or 4, and dup2 onto itself would
            # keep its close-on-exec flag.
            commands, replies = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=wire_pipe,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        return self._wait(lambda m: m.get("method") == method, keep=False)

    def _wait(self, matches, keep: bool = True) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if matches(message):
                    return message
                if "method" in message or keep:
                    self.events.append(message)
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe")
            self._buffer += chunk

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self.session = attached["sessionId"]

    def close(self) -> None:
        try:
            os.write(self._write, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)
            shutil.rmtree(self.profile, ignore_errors=True)


def check_page(
    page: str | os.PathLike,
    *,
    screenshot: str | os.PathLike | None = None,
    chromium: str | None = None,
    width: int = 1280,
    probe: str | None = None,
) -> PageCheck:
    """Load `page` from disk, wait for it, collect console errors and requests, read PAGE_FACTS,
    optionally save a full-page screenshot (PNG), then evaluate the `probe` expression (e.g. use
    the page's controls) and keep its value as facts["probe"]."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    browser = DevTools(chromium)
    try:
        browser.open_page()
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable")
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.send("Page.navigate", {"url": Path(page).resolve().as_uri()})
        browser.wait_event("Page.loadEventFired")
        facts = browser.send("Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True})[
            "result"
        ]["value"]
        if screenshot is not None:
            shot = browser.send(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
            )
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        if probe is not None:
            facts["probe"] = browser.send(
                "Runtime.evaluate", {"expression": probe, "returnByValue": True}
            )["result"].get("value")
        browser.send("Runtime.evaluate", {"expression": "1"})  # flush events raised so far
        return PageCheck(
            facts=facts,
            console_errors=console_errors(browser.events),
            requests=[
                e["params"]["request"]["url"]
                for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"
            ],
        )
    finally:
        browser.close()


def console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page")
    parser.add_argument("--screenshot")
    args = parser.parse_args(argv)
    result = check_page(args.page, screenshot=args.screenshot)
    print(json.dumps({"facts": result.facts, "problems": result.problems()}, indent=2))
    if result.problems():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
