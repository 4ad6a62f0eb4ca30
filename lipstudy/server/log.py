"""The server's log of what clients provoke (malformed requests, unsupported upgrades, refused
connections, a submission that hit a bug), at a bounded rate and size.

Issue 41: one client sending malformed requests grew stderr by 130-160 KiB/s, and pipelined
``Upgrade: websocket`` requests on one connection logged two warnings each at over 2,000 requests/s:
more than 10 GiB a day, with no token needed. Here each event is one record of at most ``max_chars``
characters (a traceback keeps its last lines), at most one record an address each ``interval_s``, and at
most ``records_per_interval`` records in all each interval (many addresses, an IPv6 /64, are bounded
too). What is not written is counted, and the next record written says how many events from how many
addresses were left out. So whatever clients send, the log grows by at most ``records_per_interval``
records of ``max_chars`` characters (and the handler's timestamp) each ``interval_s``: with the
defaults 10 x 1,000 characters a minute, about 15 MB a day.

uvicorn's protocol logs through :class:`ConnectionLog` (one per connection, :mod:`.run`), the app
through :meth:`ClientLog.log` with the request's address.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Callable

_MAX_COUNTED_ADDRESSES = 10_000  # addresses remembered for "from N addresses"; beyond, counted as one more


class ClientLog:
    """A rate- and size-limited log of client-provoked events, written to ``logger``. State of the
    event loop's thread (the protocol and the app run there): no lock."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0, records_per_interval: int = 10,
                 max_chars: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval_s, self.records_per_interval = logger, interval_s, records_per_interval
        self.max_chars, self.clock = max_chars, clock
        self._window, self._written = clock(), 0
        self._last: dict[str, float] = {}  # address -> when its last record was written
        self._left_out, self._left_out_from = 0, set()

    def log(self, level: int, address: str | None, message: str, exc_info=None) -> bool:
        """Write one event of ``address`` (None: unknown) unless the limits say no; whether written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        if now - self._window >= self.interval_s:
            self._window, self._written = now, 0
            self._last = {a: t for a, t in self._last.items() if now - t < self.interval_s}
        address = address or "unknown address"
        last = self._last.get(address)
        if self._written >= self.records_per_interval or (last is not None and now - last < self.interval_s):
            self._left_out += 1
            if len(self._left_out_from) < _MAX_COUNTED_ADDRESSES:
                self._left_out_from.add(address)
            return False
        self._written += 1
        self._last[address] = now
        text = f"{address}: {_one_line(message)}"
        if self._left_out:
            text += (f" [and {self._left_out} event(s) from {len(self._left_out_from)} address(es) not logged "
                     f"before this one: at most one record an address each {self.interval_s:g} s, "
                     f"{self.records_per_interval} in all]")
            self._left_out, self._left_out_from = 0, set()
        if exc_info:  # an exception (uvicorn's), or True inside an except block (the app's)
            text += "\n" + (traceback.format_exc() if exc_info is True
                            else "".join(traceback.format_exception(exc_info))).rstrip()
        self.logger.log(level, "%s", _bounded(text, self.max_chars))
        return True


def _one_line(text: str) -> str:
    """A message as one line: control characters (newlines included) shown as ``?``, so that a client's
    bytes in it never forge a record. Cut first: a long message costs no more than a short one."""
    return "".join(c if c.isprintable() else "?" for c in text[:100_000])


def _bounded(text: str, max_chars: int) -> str:
    """``text`` in at most ``max_chars`` characters: a long one keeps its first line's start and its end
    (a traceback's last lines)."""
    if len(text) > max_chars:
        first, cut = text.split("\n", 1)[0][: max_chars // 2], " [...] "
        text = first + cut + text[len(text) - (max_chars - len(first) - len(cut)):]
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


class ConnectionLog:
    """What uvicorn's h11 protocol and its request cycles call as their logger (``warning``, ``error``,
    ``log`` and ``level``), sent to a :class:`ClientLog` with the connection's client address."""

    def __init__(self, log: ClientLog, address: str | None):
        self._log, self._address = log, address

    @property
    def level(self) -> int:
        # uvicorn formats its trace lines when ``level <= TRACE``; the effective level skips them.
        return self._log.logger.getEffectiveLevel()

    def log(self, level: int, msg: str, *args, exc_info=None, **_) -> None:
        self._log.log(level, self._address, msg % args if args else msg, exc_info=exc_info)

    def debug(self, msg, *args, **kw) -> None:
        self.log(logging.DEBUG, msg, *args, **kw)

    def info(self, msg, *args, **kw) -> None:
        self.log(logging.INFO, msg, *args, **kw)

    def warning(self, msg, *args, **kw) -> None:
        self.log(logging.WARNING, msg, *args, **kw)

    def error(self, msg, *args, **kw) -> None:
        self.log(logging.ERROR, msg, *args, **kw)

    def exception(self, msg, *args, **kw) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=kw.pop("exc_info", True), **kw)
