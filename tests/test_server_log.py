"""The server's log of client-provoked events (issue 41): at most one record an address each interval,
a cap on all records an interval, each record bounded in size, what was left out counted; a fake
clock, no network."""
import logging

from lipstudy.server.log import ClientLog, ConnectionLog


def _log(**kw):
    records, now = [], [1000.0]
    logger = logging.getLogger(f"test.server.log.{id(records)}")
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    return ClientLog(logger, clock=lambda: now[0], **kw), records, now


def test_one_record_an_address_an_interval_and_a_cap_on_all():
    log, records, now = _log(interval_s=60, records_per_interval=3)
    assert [log.log(logging.WARNING, "10.0.0.1", f"bad request {k}") for k in range(1000)] == [True] + [False] * 999
    # Many addresses (one client with an IPv6 /64): three records in all this interval.
    written = [log.log(logging.WARNING, f"2001:db8::{k:x}", "bad request") for k in range(500)]
    assert sum(written) == 2 and len(records) == 3
    # What was left out is counted, and said by the next record written.
    assert records[1].getMessage() == (
        "2001:db8::0: bad request [and 999 event(s) from 1 address(es) not logged before this one: at most one "
        "record an address each 60 s, 3 in all]")
    now[0] += 60  # the next interval
    assert log.log(logging.WARNING, "10.0.0.1", "bad request again")
    assert records[-1].getMessage() == (
        "10.0.0.1: bad request again [and 498 event(s) from 498 address(es) not logged before this one: at most "
        "one record an address each 60 s, 3 in all]")
    assert not log.log(logging.WARNING, "10.0.0.1", "and again")
    assert not log.log(logging.INFO, "10.0.0.9", "below the logger's level")  # neither written nor counted
    now[0] += 60
    assert log.log(logging.WARNING, "10.0.0.9", "x") and records[-1].getMessage() == (
        "10.0.0.9: x [and 1 event(s) from 1 address(es) not logged before this one: at most one record an "
        "address each 60 s, 3 in all]")
    # The memory of addresses is pruned as intervals pass: no growth with the number of clients.
    assert len(log._last) <= 3


def test_records_are_bounded_in_size_and_cannot_forge_lines():
    log, records, now = _log(max_chars=200)
    log.log(logging.WARNING, "10.0.0.1", "evil\r\n2026-01-01 ERROR forged record\x1b[31m" + "x" * 10_000)
    text = records[-1].getMessage()
    assert len(text) == 200 and "\r" not in text and "\x1b" not in text and "\n" not in text
    assert text.startswith("10.0.0.1: evil??2026-01-01 ERROR forged record?[31mxxx") and text.endswith("xxx")
    try:
        raise ValueError("deep inside a bug")
    except ValueError as e:
        log.log(logging.ERROR, "10.0.0.2", "submission failed", exc_info=True)
        log.log(logging.ERROR, "10.0.0.3", "Exception in ASGI application", exc_info=e)  # as uvicorn gives it
    for r in records[-2:]:
        text = r.getMessage()
        assert len(text) <= 200
        assert text.endswith('raise ValueError("deep inside a bug")\nValueError: deep inside a bug')
        assert text.startswith(("10.0.0.2: submission failed", "10.0.0.3: Exception in ASGI application"))


def test_uvicorns_calls_reach_the_limiter_with_the_connections_address():
    log, records, now = _log()
    conn = ConnectionLog(log, "192.0.2.7")
    assert conn.level == logging.WARNING  # uvicorn formats trace lines only when level <= 5
    conn.warning("Invalid HTTP request received.")
    conn.warning("Unsupported upgrade request.")
    conn.info("below the level")
    assert [r.getMessage() for r in records] == ["192.0.2.7: Invalid HTTP request received."]
    now[0] += 61
    conn.error("%s %d", "formatted", 3)
    assert records[-1].getMessage().startswith("192.0.2.7: formatted 3 [and 1 event(s)")
