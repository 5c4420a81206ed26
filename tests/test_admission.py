"""Unit tests of admission on the local backend: seen store, journal, robots.txt gate and frontier
in one process, no server and no process started (the seen store stays in process before ``start``)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from crawlkit.backends.base import Journal
from crawlkit.backends.local.backend import LocalBackend
from crawlkit.backends.local.jobdir import JobDir, NullJournal
from crawlkit.core.admission import Admission
from crawlkit.extensions.robots import ROBOTS_CALLBACK, RobotsGate, RobotsRules
from crawlkit.http import Request
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats


class Seeds(Spider):
    name = "seeds"
    start_urls = ["http://a.test/1", "http://a.test/2", "http://a.test/1"]

    def parse(self, response: object) -> None:  # start requests need a callback to be admitted
        pass


def admission(journal: Journal, stats: Stats, robots: bool = False) -> Admission:
    settings = load_settings(cli={"robots": robots, "use_sitemaps": False})
    backend = LocalBackend(settings, stats, journal, multiprocessing.get_context("spawn"), tickets=8)
    rules = RobotsRules("crawlkit-test/1.0", backend.robots_rechecks) if robots else None
    gate = RobotsGate(rules, backend, stats, recheck_after=1.0)
    return Admission(backend, gate, Seeds(), settings, stats)


def queued(admit: Admission) -> list[tuple[int, str]]:
    """Take everything the frontier holds: (lease, url) in the order it hands them out."""
    frontier, got = admit.backend.frontier, []
    while (host := frontier.next_host(0.0)) is not None:
        taken = frontier.take(host)
        assert taken is not None
        got.append((taken[0], taken[1].url))
    return got


def test_duplicates_are_dropped_within_a_batch_and_against_the_seen_store() -> None:
    stats = Stats()
    admit = admission(NullJournal(), stats)
    admit.offer([(1, Request("http://a.test/1")), (2, Request("http://a.test/2")), (1, Request("http://a.test/1"))])
    admit.finish(lease=7)
    admit.admit()
    assert admit.all_queued()
    admit.offer([(2, Request("http://a.test/2")), (None, Request("http://a.test/2", dont_filter=True))])
    admit.admit()
    assert queued(admit) == [(0, "http://a.test/1"), (0, "http://a.test/2"), (0, "http://a.test/2")]
    assert stats.counts["duplicates"] == 2
    assert admit.backend.seen.count() == 2  # dont_filter requests are not fingerprinted
    assert admit.idle()


def test_a_hosts_requests_wait_for_its_robots_txt_then_only_the_allowed_go_in(tmp_path: Path) -> None:
    stats = Stats()
    journal = JobDir(tmp_path / "job", count=stats.incr)
    admit = admission(journal, stats, robots=True)
    admit.offer([(1, Request("http://a.test/public")), (2, Request("http://a.test/private/x"))])
    admit.admit()
    robots = queued(admit)
    assert robots == [(0, "http://a.test/robots.txt")]  # not journaled: its lease is 0
    assert len(admit.gate.waiting["a.test"]) == 2 and not admit.idle()
    assert journal.pending_count() == 2  # journaled as they were admitted, before the answer
    admit.gate.answer("a.test", "http://a.test/robots.txt", 200, b"User-agent: *\nDisallow: /private\n")
    [(lease, url)] = queued(admit)
    assert url == "http://a.test/public" and lease > 0  # its journal row rides as its lease
    assert stats.counts["robots_disallowed"] == 1
    assert journal.pending_count() == 1  # the disallowed one is done
    journal.done(lease)
    assert journal.pending_count() == 0
    assert list(journal.robots()) == [("a.test", 200, b"User-agent: *\nDisallow: /private\n")]
    assert admit.idle()
    journal.close()


def test_robots_txt_requests_carry_crawlkit_keys_of_their_own_only() -> None:
    admit = admission(NullJournal(), Stats(), robots=True)
    admit.offer([(1, Request("http://a.test/1", meta={"from": "seed"}))])
    admit.admit()
    frontier = admit.backend.frontier
    taken = frontier.take("a.test")
    assert taken is not None and taken[1].callback == ROBOTS_CALLBACK
    admit.gate.answer("a.test", "http://a.test/robots.txt", 404, b"")
    taken = frontier.take("a.test")
    assert taken is not None and taken[1].meta == {"from": "seed"}  # nothing of the engine's in meta


def test_a_jobdir_resumes_its_pending_requests_and_seen_urls_but_no_journal_resumes_nothing(tmp_path: Path) -> None:
    stats = Stats()
    first = admission(JobDir(tmp_path / "job", count=stats.incr), stats)
    assert first.backend.journal.begin("out.jsonl") is None  # a new crawl
    first.seed()  # a job directory takes every start request in before the crawl starts
    assert first.starting is None
    [(lease, url), (other, _)] = queued(first)
    assert url == "http://a.test/1" and 0 < lease < other
    first.backend.journal.done(lease)
    first.backend.journal.commit(0, dict(stats.counts))
    first.backend.journal.close()

    again = Stats()
    resumed = admission(JobDir(tmp_path / "job", count=again.incr), again)
    assert resumed.backend.journal.begin("out.jsonl") == (0, {"duplicates": 1})
    resumed.seed()
    assert queued(resumed) == [(other, "http://a.test/2")]  # the pending one, with its row as its lease
    fingerprints = [fp for batch in resumed.backend.journal.fingerprints() for fp in batch]
    resumed.offer([(fp, Request(f"http://a.test/{fp}")) for fp in fingerprints])
    resumed.admit()
    assert queued(resumed) == [] and again.counts["duplicates"] == 2  # the seen store was refilled
    resumed.backend.journal.close()

    fresh = admission(NullJournal(), Stats())
    assert fresh.backend.journal.begin("out.jsonl") is None and not fresh.backend.journal.durable
    fresh.seed()  # without a journal the seeds go in by batches as the crawl runs
    fresh.admit()
    assert queued(fresh) == [(0, "http://a.test/1"), (0, "http://a.test/2")]
