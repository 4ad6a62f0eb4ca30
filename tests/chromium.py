"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
file descriptors 3 and 4, messages separated by NUL bytes), so that one browser launch renders
every page of the book at every width. Standard library only; every wait is bounded in time.

``Browser(..., offline=True)`` cuts the network off: a page opened from ``file://`` reads as it
would on a machine with no connection, and every request it makes is recorded, so a test can tell
what it would have fetched from outside."""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


class BrowserError(RuntimeError):
    pass


def _high(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """``with Browser(profile_dir) as b: b.render(url, width)``."""

    def __init__(self, profile_dir: Path, timeout: float = 60.0, offline: bool = False):
        self.timeout = timeout
        self._closed_port = None
        # Pipe ends above 10 (and close-on-exec), so that placing them at 3 and 4 in the child
        # can never overwrite one with the other.
        to_chrome_r, self._out = (_high(fd) for fd in os.pipe())
        self._in, from_chrome_w = (_high(fd) for fd in os.pipe())
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile_dir}",
                 "--remote-debugging-pipe", "about:blank"]
        if offline:
            # Every request that is not for a file goes through a proxy that refuses it: a port
            # held bound and never listened on, so no other process can answer there (loopback
            # included, "<-loopback>"). Host names do not resolve either, should a request bypass
            # the proxy. A request fails at once, as with no network, instead of waiting on one.
            self._closed_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._closed_port.bind(("127.0.0.1", 0))
            port = self._closed_port.getsockname()[1]
            flags[-1:-1] = [f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
                            "--host-resolver-rules=MAP * ~NOTFOUND"]

        def fds():  # the protocol's pipe is fds 3 (to the browser) and 4 (from it)
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        # dup2 leaves 3 and 4 inheritable; every other descriptor of ours is close-on-exec.
        self.proc = subprocess.Popen([CHROMIUM, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self._events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.call("Network.enable", session=True)  # so that render() can list the page's requests

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._closed_port is not None:
            self._closed_port.close()

    # -- the protocol

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                    raise BrowserError(f"Chromium closed the pipe {err}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_event(self, name: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == name:
                    return self._events.pop(i)
            self._events.append(self._read(deadline))

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    # -- what the tests use

    def render(self, url: str, width: int, max_height: int = 6000) -> tuple[dict, bytes]:
        """Load ``url`` in a ``width`` wide viewport; return the page's facts and a PNG of the
        page, top to bottom (at most ``max_height`` pixels). The facts: the document's height and
        width; each image's source and natural size; the body text; ``math``, each element of
        class ``math`` (Sphinx's equations) with whether MathJax typeset it and, if not, its
        text; ``mathjax``, how many MathJax output elements the page has; ``claims``, each claim block's
        right edge and whether its content is cut (the claims chapter), and the ``viewport`` width; ``tables``, each
        table's caption, width, whether a scroll wrapper holds it and whether it is ``cut`` (wider than
        its container with no wrapper to scroll it, or in a wrapper that itself runs past the
        viewport); ``prose``, the text of
        ``main`` outside code, scripts and MathJax's output (raw LaTeX left there was not
        typeset); ``fonts_failed``, web fonts that failed to load; ``requests``, every URL the
        page requested (before the screenshot), its own included."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=800,
                  deviceScaleFactor=1, mobile=width < 600)
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        self._wait_event("Page.loadEventFired")
        # MathJax typesets after the load event; its startup promise settles when it is done. A
        # page whose MathJax did not load has no such promise, and its equations stay raw.
        facts = self.evaluate("""(async () => {
            await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
            const startup = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
            const within = ms => new Promise(r => setTimeout(r, ms));
            if (startup) await Promise.race([startup.catch(() => null), within(30000)]);
            await Promise.race([document.fonts.ready, within(10000)]);
            const main = document.querySelector('main') || document.body;
            const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT, {acceptNode: n =>
                n.parentElement.closest('pre, code, script, style, mjx-container')
                    ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
            const prose = [];
            while (walker.nextNode()) prose.push(walker.currentNode.data);
            return {height: document.documentElement.scrollHeight,
                    width: document.documentElement.scrollWidth,
                    images: [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                            w: i.naturalWidth, h: i.naturalHeight})),
                    text: document.body.innerText,
                    math: [...document.querySelectorAll('.math')].map(e => {
                        const typeset = e.querySelector('mjx-container') !== null;
                        return {typeset: typeset, text: typeset ? '' : e.textContent.slice(0, 120)};
                    }),
                    mathjax: document.querySelectorAll('mjx-container').length,
                    claims: [...document.querySelectorAll('.lipstudy-claim')].map(e => {
                        const r = e.getBoundingClientRect();
                        return {right: r.right, cut: e.scrollWidth > e.clientWidth + 1, lines: Math.round(r.height)};
                    }),
                    // Each table wider than the box it sits in and with no scroll wrapper (an element
                    // with overflow-x auto or scroll) between it and the article: a reader cannot reach
                    // its right part. The article's own container scrolls the whole page, so the search
                    // stops there: it is not a table's wrapper.
                    tables: [...main.querySelectorAll('table')].map(t => {
                        const r = t.getBoundingClientRect();
                        let wrapped = false, box = null;
                        for (let e = t.parentElement; e && !e.matches('article, .bd-article-container, main, body');
                             e = e.parentElement) {
                            const ox = getComputedStyle(e).overflowX;
                            if (ox === 'auto' || ox === 'scroll') { wrapped = true; box = e; break; }
                        }
                        const host = box || t.closest('article, .bd-article-container, main') || document.body;
                        const h = host.getBoundingClientRect();
                        const past = Math.max(r.right - Math.min(h.right, window.innerWidth), 0);
                        const caption = t.querySelector('caption');
                        return {caption: (caption ? caption.textContent : t.textContent).slice(0, 80),
                                wrapped: wrapped, width: Math.round(r.width),
                                cut: wrapped ? h.right > window.innerWidth + 1 : past > 1};
                    }),
                    viewport: window.innerWidth,
                    prose: prose.join(' '),
                    fonts_failed: [...document.fonts].filter(f => f.status === 'error').map(f => f.family)};
        })()""")
        height = min(int(facts["height"]), max_height)
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        facts["requests"] = [e["params"]["request"]["url"] for e in self._events
                             if e.get("method") == "Network.requestWillBeSent"]
        return facts, base64.b64decode(shot["data"])
