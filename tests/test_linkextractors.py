"""LinkExtractor and Link on Responses built directly, a parameter at a time (as Scrapy's
tests/test_linkextractors.py), and the ``follow`` setting's checks; no server, no process."""

from __future__ import annotations

import re

import pytest

from crawlkit import ConfigError, Link, LinkExtractor, Response
from crawlkit.linkextractors import IGNORED_EXTENSIONS, check_follow, follow_rules
from crawlkit.settings import load_settings

PAGE = """<html><head><base href="http://example.com/"><title>links</title></head><body>
<div id="wrapper">
  <div id="subwrapper">
    <area href="sample1.html" alt="sample1">
    <a href="sample2.html">sample 2<img src="sample2.jpg" alt="sample2"></a>
  </div>
  <a href="http://example.com/sample3.html" title="sample 3">sample 3 text</a>
  <a href="sample3.html">sample 3 repetition</a>
  <a href="sample3.html#foo">sample 3 repetition with fragment</a>
  <a href="http://www.google.com/something"></a>
  <a href="http://example.com/innertag.html"><strong>inner</strong> tag</a>
  <a href="  page%204.html
  ">href with white space</a>
</div>
<ul class="nav"><li><a href="http://example.org/nofollow.html" rel="nofollow">nofollow</a>
<li><a href="http://example.org/nofollow2.html" rel="External NoFollow">nofollow2</a></ul>
<a href="/report.pdf">pdf</a> <a href="/archive.TAR.GZ">archive</a> <a href="http://docs.py">a host in .py</a>
<a href="mailto:me@example.com">mail</a> <a href="http://[::1">broken</a>
<a href="javascript:go('/js/page.html')">js</a>
<link rel="next" href="/page/2"> <img src="/logo.png">
</body></html>"""

URL = "http://example.com/index.html"


@pytest.fixture()
def response() -> Response:
    return Response(URL, body=PAGE)


def urls(extractor: LinkExtractor, response: Response) -> list[str]:
    return [link.url for link in extractor.extract_links(response)]


def test_the_defaults_give_a_and_area_links_once_each_with_text_and_nofollow_in_page_order(response) -> None:
    assert LinkExtractor().extract_links(response) == [
        Link("http://example.com/sample1.html", ""),
        Link("http://example.com/sample2.html", "sample 2"),
        Link("http://example.com/sample3.html", "sample 3 text"),
        Link("http://example.com/sample3.html#foo", "sample 3 repetition with fragment"),
        Link("http://www.google.com/something", ""),
        Link("http://example.com/innertag.html", "inner tag"),
        Link("http://example.com/page%204.html", "href with white space"),
        Link("http://example.org/nofollow.html", "nofollow", nofollow=True),
        Link("http://example.org/nofollow2.html", "nofollow2", nofollow=True),
        Link("http://docs.py", "a host in .py"),
    ]  # no pdf, no tar.gz (IGNORED_EXTENSIONS), no mailto: or javascript:, the broken one skipped


def test_unique_false_keeps_repeats(response) -> None:
    found = urls(LinkExtractor(unique=False), response)
    assert found.count("http://example.com/sample3.html") == 2


def test_allow_and_deny_are_regexes_searched_in_the_absolute_url(response) -> None:
    assert urls(LinkExtractor(allow=r"sample\d"), response) == [
        "http://example.com/sample1.html", "http://example.com/sample2.html", "http://example.com/sample3.html",
        "http://example.com/sample3.html#foo"]
    assert urls(LinkExtractor(allow=(r"sample\d", "innertag"), deny=["sample[12]", re.compile("#foo$")]),
                response) == ["http://example.com/sample3.html", "http://example.com/innertag.html"]
    assert urls(LinkExtractor(deny="example"), response) == ["http://www.google.com/something", "http://docs.py"]


def test_allow_domains_and_deny_domains_match_subdomains_and_ports(response) -> None:
    assert urls(LinkExtractor(allow_domains="example.org"), response) == [
        "http://example.org/nofollow.html", "http://example.org/nofollow2.html"]
    assert urls(LinkExtractor(deny_domains=["example.com", "google.com"]), response) == [
        "http://example.org/nofollow.html", "http://example.org/nofollow2.html", "http://docs.py"]
    page = Response("http://a.test/", body='<a href="http://a.test:8080/x">x</a><a href="http://www.a.test/y">y</a>')
    assert urls(LinkExtractor(allow_domains=["a.test"]), page) == ["http://a.test:8080/x", "http://www.a.test/y"]
    assert urls(LinkExtractor(allow_domains=["a.test:8080"]), page) == ["http://a.test:8080/x"]


def test_deny_extensions_matches_the_end_of_the_path_in_any_case(response) -> None:
    assert "pdf" in IGNORED_EXTENSIONS and "tar.gz" in IGNORED_EXTENSIONS
    everything = urls(LinkExtractor(deny_extensions=[]), response)
    assert {"http://example.com/report.pdf", "http://example.com/archive.TAR.GZ"} <= set(everything)
    assert urls(LinkExtractor(deny_extensions=["html", ".GZ"], allow="example"), response) == [
        "http://example.com/report.pdf"]
    page = Response("http://a.test/", body='<a href="/f.pdf?v=2">f</a><a href="/g.pdf#p3">g</a>'
                                          '<a href="/h?f=x.pdf">h</a>')
    assert urls(LinkExtractor(), page) == ["http://a.test/h?f=x.pdf"]  # the query and fragment are no part of the path


def test_restrict_xpaths_and_restrict_css_take_links_inside_what_they_select(response) -> None:
    assert urls(LinkExtractor(restrict_xpaths='//div[@id="subwrapper"]'), response) == [
        "http://example.com/sample1.html", "http://example.com/sample2.html"]
    assert urls(LinkExtractor(restrict_css="ul.nav"), response) == [
        "http://example.org/nofollow.html", "http://example.org/nofollow2.html"]
    both = LinkExtractor(restrict_xpaths='//div[@id="subwrapper"]', restrict_css="ul.nav li:first-child")
    assert urls(both, response) == ["http://example.com/sample1.html", "http://example.com/sample2.html",
                                    "http://example.org/nofollow.html"]
    # An element a region path selects is itself a link; text and attributes selected hold none.
    assert urls(LinkExtractor(restrict_xpaths=["//a[@title]", "//a/text()", "//a/@href"]), response) == [
        "http://example.com/sample3.html"]


def test_restrict_text_keeps_links_whose_text_matches(response) -> None:
    assert urls(LinkExtractor(restrict_text=[r"^sample \d text", "inner"]), response) == [
        "http://example.com/sample3.html", "http://example.com/innertag.html"]


def test_tags_and_attrs_choose_where_links_are_read_link_rel_next_and_img_src(response) -> None:
    assert urls(LinkExtractor(tags="link"), response) == ["http://example.com/page/2"]
    assert urls(LinkExtractor(tags=["img"], attrs=["src"], deny_extensions=[]), response) == [
        "http://example.com/sample2.jpg", "http://example.com/logo.png"]
    assert urls(LinkExtractor(tags=["area", "img"], attrs=("href", "src"), deny_extensions=[]), response) == [
        "http://example.com/sample1.html", "http://example.com/sample2.jpg", "http://example.com/logo.png"]


def test_only_link_rel_next_among_link_elements_through_a_region_per_kind() -> None:
    page = Response("http://a.test/1", body='<link rel="stylesheet" href="/s"><link rel="alternate" href="/feed">'
                                            '<link rel="next" href="/2"><a href="/x">x</a>')
    assert urls(LinkExtractor(tags="link"), page) == ["http://a.test/s", "http://a.test/feed", "http://a.test/2"]
    rel_next = LinkExtractor(tags=["a", "link"], restrict_xpaths=["//a", "//link[@rel='next']"])
    assert urls(rel_next, page) == ["http://a.test/x", "http://a.test/2"]


def test_canonicalize_sorts_the_query_and_drops_the_fragment_then_repeats_go() -> None:
    page = Response("http://a.test/", body='<a href="/p?b=2&a=1#top">1</a><a href="/p?a=1&b=2">2</a>')
    assert urls(LinkExtractor(), page) == ["http://a.test/p?b=2&a=1#top", "http://a.test/p?a=1&b=2"]
    assert urls(LinkExtractor(canonicalize=True), page) == ["http://a.test/p?a=1&b=2"]
    assert urls(LinkExtractor(canonicalize=True), Response("http://a.test/", body='<a href="/x">x</a>')) == [
        "http://a.test/x"]  # a URL already canonical is kept


def test_process_value_rewrites_or_drops_a_url_and_a_relative_result_is_joined(response) -> None:
    def from_javascript(value: str) -> str | None:
        found = re.search(r"javascript:go\('(.*?)'\)", value)
        return found.group(1) if found else None

    assert urls(LinkExtractor(process_value=from_javascript), response) == ["http://example.com/js/page.html"]


def test_white_space_around_a_value_goes_whatever_strip_says_as_the_url_standard_wants(response) -> None:
    assert urls(LinkExtractor(strip=False, allow="page"), response) == ["http://example.com/page%204.html"]


def test_non_ascii_urls_are_percent_encoded_in_the_pages_charset() -> None:
    page = Response("http://a.test/", body='<a href="/caf\xe9?q=\xe9">x</a>'.encode("latin-1"),
                    headers={"Content-Type": "text/html; charset=latin-1"})
    assert urls(LinkExtractor(), page) == ["http://a.test/caf%C3%A9?q=%E9"]


def test_a_page_that_is_not_html_has_no_links() -> None:
    assert LinkExtractor().extract_links(Response("http://a.test/x.json", body='{"a": "<a href=/x>x</a>"}')) == []


def test_urls_gives_what_extract_links_gives_without_fragments_or_repeats(response) -> None:
    extractor = LinkExtractor(allow="sample3")
    assert extractor.urls(response) == ["http://example.com/sample3.html"]
    # The first link of a URL decides: sample3.html's is "sample 3 text"; sample3.html#foo's matches.
    assert LinkExtractor(restrict_text="repetition").urls(response) == ["http://example.com/sample3.html"]


def test_matches_applies_the_url_and_domain_rules_to_one_url() -> None:
    extractor = LinkExtractor(allow="/docs/", deny_domains="old.a.test")
    assert extractor.matches("http://a.test/docs/x.pdf")  # extensions are not matches()'s business, as in Scrapy
    assert not extractor.matches("http://a.test/blog/")
    assert not extractor.matches("http://old.a.test/docs/")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"allow": "("}, "allow: '(' is not a regular expression"),
    ({"deny": ["ok", "[z-a]"]}, "deny: '[z-a]' is not a regular expression"),
    ({"restrict_xpaths": "//a["}, "restrict_xpaths: '//a[' is not an XPath expression"),
    ({"restrict_css": "div["}, "restrict_css: 'div[' is not a CSS selector"),
    ({"tags": ["a", "a b"]}, "tags, attrs: 'a b' is not a tag or attribute name"),
    ({"attrs": []}, "tags, attrs: each must name at least one"),
])
def test_a_bad_rule_fails_when_the_extractor_is_made(kwargs, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LinkExtractor(**kwargs)


def test_response_follow_and_follow_all_take_links_as_scrapy_s_do(response) -> None:
    links = LinkExtractor(allow="sample[12]").extract_links(response)
    assert response.follow(links[0], callback="parse_item").url == "http://example.com/sample1.html"
    assert [r.url for r in response.follow_all(links)] == ["http://example.com/sample1.html",
                                                            "http://example.com/sample2.html"]


def test_link_equality_hash_and_repr() -> None:
    link = Link("http://a.test/", "A", nofollow=True)
    assert link == Link("http://a.test/", "A", "", True) and link != Link("http://a.test/", "A")
    assert len({link, Link("http://a.test/", "A", nofollow=True)}) == 1
    assert repr(link) == "Link(url='http://a.test/', text='A', fragment='', nofollow=True)"
    with pytest.raises(TypeError):
        Link(b"http://a.test/")  # type: ignore[arg-type]


# --- the follow setting of the built-in spider ---


def test_the_follow_setting_is_normalised_plain_data_and_makes_an_extractor() -> None:
    assert check_follow({}) == {} and follow_rules({}) is None
    checked = check_follow({"allow": "/docs/", "tags": ["a", "link"], "deny_extensions": "IGNORED_EXTENSIONS"})
    assert checked == {"allow": ["/docs/"], "tags": ["a", "link"], "deny_extensions": "IGNORED_EXTENSIONS"}
    extractor = follow_rules(checked)
    assert extractor is not None and ".pdf" in extractor.deny_extensions
    assert follow_rules({"allow": ["x"]}).deny_extensions == ()  # type: ignore[union-attr]  # none by default


@pytest.mark.parametrize(("value", "message"), [
    ("{allow: [(]}", "'follow' → allow: '(' is not a regular expression"),
    ("{allowed: [x]}", "'follow': unknown key 'allowed'; did you mean 'allow'? the link rules are allow, deny,"),
    ("{3: [x]}", "'follow': unknown key 3; the link rules are allow, deny,"),
    ("{deny: 3}", "'follow' → 'deny' must be a list of non-empty strings, got 3"),
    ("{deny_extensions: 7}", "'deny_extensions' must be a list of non-empty strings or IGNORED_EXTENSIONS"),
    ("{tags: []}", "'follow' → tags, attrs: each must name at least one (the defaults are a, area and href)"),
    ("{restrict_css: ['div[']}", "'follow' → restrict_css: 'div[' is not a CSS selector"),
    ("[a]", "'follow' must be a mapping of link rules"),
])
def test_a_bad_follow_setting_is_a_one_line_config_error_naming_the_key(value, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(cli={"follow": value})
    assert message in str(info.value) and "\n" not in str(info.value)
