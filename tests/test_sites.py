"""The ``hosts`` setting: which rule a host gets, and the one-line errors for bad rules."""

from __future__ import annotations

import pickle

import pytest

from crawlkit.errors import ConfigError
from crawlkit.settings import load_settings
from crawlkit.sites import NO_RULE, SiteRules


def rules(text: str) -> SiteRules:
    return SiteRules(load_settings(cli={"hosts": text}).hosts)


def test_exact_beats_glob_and_first_glob_wins() -> None:
    r = rules('{"*.example.org": {per_host: 1}, "*.org": {per_host: 3}, "a.example.org": {delay: 2}}')
    assert r.for_host("a.example.org").delay == 2.0 and r.for_host("a.example.org").per_host is None
    assert r.for_host("b.example.org").per_host == 1
    assert r.for_host("b.other.org").per_host == 3
    assert r.for_host("example.org").per_host == 3  # *.example.org needs a dot before it
    assert r.for_host("example.com") is NO_RULE


def test_ports_and_case() -> None:
    r = rules('{"127.0.0.2:8001": {max_pages: 5}, "Docs.Example.COM": {user_agent: me/1.0}, "[::1]": {per_host: 4}}')
    assert r.for_host("127.0.0.2:8001").max_pages == 5
    assert r.for_host("127.0.0.2:8002") is NO_RULE
    assert r.for_host("docs.example.com:8080").user_agent == "me/1.0"  # a bare host matches every port
    assert r.for_host("[::1]:8080").per_host == 4


def test_headers_and_pickling() -> None:
    r = pickle.loads(pickle.dumps(rules('{"*": {headers: {X-Token: abc, Accept-Language: fr}}}')))
    assert r.for_host("anything:81").headers == (("X-Token", "abc"), ("Accept-Language", "fr"))
    assert not SiteRules({})


@pytest.mark.parametrize(("text", "message"), [
    ("[1]", "'hosts' must be a mapping of host patterns to rules, got list"),
    ('{"a b": {}}', "'a b' is not a host pattern"),
    ('{"a": 3}', "'hosts' → 'a' must be a mapping of settings"),
    ('{"a": {foo: 1}}', "unknown key 'foo'; a host rule may set per_host, delay, max_pages, user_agent, headers"),
    ('{"a": {per_host: 0}}', "'hosts' → 'a': 'per_host' must be an integer ≥ 1, got 0"),
    ('{"a": {delay: .inf}}', "'delay' must be a finite number from 0 to 86,400"),
    ('{"a": {delay: null}}', "'delay' must not be null"),
    ('{"a": {headers: {"x y": v}}}', "'x y' is not an HTTP header name"),
    ('{"a": {headers: {X: "a\\r\\nb"}}}', "header 'X' must be a one-line string"),
])
def test_bad_rules_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cli={"hosts": text})
    assert message in str(caught.value) and "\n" not in str(caught.value)
