"""Supervision's decisions on their own: when deaths become a crash loop, which fetcher to kill for
stalling and whom to blame, which parser has spent too long on a page. No process is started:
the shared arrays are lists, the in-flight table is built directly."""

from __future__ import annotations

import pytest

from crawlkit.core.dispatch import InFlight
from crawlkit.core.supervision import STALL_GRACE, Respawns, slow_parsers, stalled_fetchers
from crawlkit.errors import CrashLoopError
from crawlkit.fetch.channels import RETIRED
from crawlkit.http import Request


def entry(url: str, ticket: int, queue: int, fetching: bool = True) -> InFlight:
    return InFlight("a.test", Request(url), lease=ticket, slot=0, ticket=ticket, queue=queue, parser=0,
                    fetching=fetching)


def test_deaths_in_quick_succession_with_no_page_done_stop_the_crawl() -> None:
    respawns = Respawns(limit=3, window=10.0)
    respawns.died("parser", 0.0)
    respawns.died("parser", 1.0)
    respawns.died("fetcher", 2.0)  # another kind counts apart
    with pytest.raises(CrashLoopError, match=r"parser processes died 3 times in 5s with no page done"):
        respawns.died("parser", 5.0)


def test_a_page_done_or_a_slow_pace_forgives_earlier_deaths() -> None:
    respawns = Respawns(limit=3, window=10.0)
    respawns.died("parser", 0.0)
    respawns.died("parser", 1.0)
    respawns.page_done()
    respawns.died("parser", 2.0)
    respawns.died("parser", 3.0)
    # The limit reached, but over more than the window: a process that dies now and then, not at start.
    respawns.died("parser", 13.5)
    respawns.died("parser", 24.0)


def test_a_fetcher_that_stops_beating_is_killed_and_blames_none_of_its_requests() -> None:
    now = 1000.0
    claimed = [101, 102, 0, RETIRED]
    heartbeats = [now - STALL_GRACE - 1, now - 1, 0.0, now - 100]
    inflight = {1: entry("http://a.test/1", 0, 0)}
    deadlines, released = [now + 5, 0.0], [0, 0]
    stalled = stalled_fetchers(claimed, heartbeats, deadlines, released, inflight, now)
    assert list(stalled) == [101]
    why, blamed = stalled[101]
    assert why == f"has not answered for {STALL_GRACE + 1:.0f}s" and blamed == set()


def test_a_fetcher_past_a_deadline_blames_the_overdue_requests_alone() -> None:
    now = 1000.0
    claimed = [101, 102]
    heartbeats = [now - 1, now - 1]  # both beating: a hook hangs, not the process
    late = now - STALL_GRACE - 2
    inflight = {
        1: entry("http://a.test/overdue", 0, 0),
        2: entry("http://a.test/on-time", 1, 0),
        3: entry("http://a.test/released", 2, 1),  # its permit is given back: the exchange is over
        4: entry("http://a.test/parsing", 3, 1, fetching=False),
        5: entry("http://a.test/untaken", 4, 1),  # no thread took it yet
    }
    deadlines = [late, now + 5, late, late, 0.0]
    released = [0, 0, 1, 0, 0]
    stalled = stalled_fetchers(claimed, heartbeats, deadlines, released, inflight, now)
    assert stalled == {101: ("is 12s past the deadline of http://a.test/overdue", {1})}


def test_a_parser_is_reported_once_it_has_spent_more_than_the_limit_on_one_page() -> None:
    watched = [(0, 0.0), (0, 0.0)]
    assert slow_parsers([7, 0], watched, 10.0, 2.0) == []  # first seen on request 7
    assert watched == [(7, 10.0), (0, 10.0)]
    assert slow_parsers([7, 8], watched, 12.0, 2.0) == []  # 2 s on it: not more than the limit
    assert slow_parsers([9, 8], watched, 12.5, 2.0) == []  # on to another page: watched afresh
    assert slow_parsers([9, 8], watched, 14.6, 2.0) == [(0, pytest.approx(2.1)), (1, pytest.approx(2.6))]
    assert watched == [(0, 14.6), (0, 14.6)]  # not reported again before it is seen on a page anew
    assert slow_parsers([9, 8], watched, 14.7, 2.0) == []
