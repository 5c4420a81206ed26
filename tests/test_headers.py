"""Headers, the one type of Request.headers and Response.headers: built directly, no server."""

from __future__ import annotations

import pickle

import pytest

from crawlkit import Headers, Request, Response, safepickle
from crawlkit.parse.redirect import redirect_request

COOKIES = ["a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2"]  # a comma inside the first value


def test_a_name_is_found_whatever_its_case_and_keeps_the_case_it_was_given() -> None:
    headers = Headers({"Content-Type": "text/html"})
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "text/html"
    assert "content-TYPE" in headers and "Location" not in headers and 1 not in headers
    assert headers.get("Location") is None and headers.get("Location", "") == ""
    with pytest.raises(KeyError):
        headers["Location"]
    headers["content-type"] = "text/plain"  # replaces, under the name as now given
    assert list(headers) == ["content-type"] and headers["Content-Type"] == "text/plain" and len(headers) == 1
    del headers["CONTENT-type"]
    assert not headers and "content-type" not in headers


def test_repeated_headers_stay_apart_and_get_joins_them() -> None:
    headers = Headers([("Set-Cookie", COOKIES[0]), ("Content-Type", "text/html"), ("set-cookie", COOKIES[1])])
    assert headers.getlist("SET-COOKIE") == COOKIES and headers.getlist("Link") == []
    assert headers["Set-Cookie"] == ", ".join(COOKIES)  # one value a name, as requests gives
    assert list(headers) == ["Set-Cookie", "Content-Type"] and len(headers) == 2
    headers.add("Link", "</a>; rel=next")
    headers.add(b"link", b"</b>; rel=prev")
    assert headers.getlist("Link") == ["</a>; rel=next", "</b>; rel=prev"]
    headers.getlist("Link").clear()  # a copy: the headers keep theirs
    assert len(headers.getlist("link")) == 2
    headers["Set-Cookie"] = "c=3"
    assert headers.getlist("set-cookie") == ["c=3"]


def test_bytes_are_read_as_latin1_and_anything_else_is_refused() -> None:
    headers = Headers({b"X-Name": b"caf\xe9", "X-List": [b"1", "2"]})
    assert headers["x-name"] == "café" and headers.getlist("X-List") == ["1", "2"]
    headers[b"X-Raw"] = b"\xff"
    assert headers["x-raw"] == "\xff"
    with pytest.raises(TypeError, match="str or bytes, got int"):
        Headers({"X-Count": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping or"):
        Headers("Content-Type: text/html")


def test_a_copy_is_apart_and_equality_ignores_the_case_of_names() -> None:
    original = Headers([("Set-Cookie", COOKIES[0]), ("Set-Cookie", COOKIES[1])])
    copy = Headers(original)
    copy.add("set-cookie", "c=3")
    copy["X"] = "1"
    assert original.getlist("Set-Cookie") == COOKIES and "X" not in original
    assert Headers({"Content-Type": "a"}) == {"content-type": "a"} == Headers([(b"CONTENT-TYPE", b"a")])
    assert original == Headers({"set-cookie": COOKIES}) and original != {"Set-Cookie": ", ".join(COOKIES)}
    assert Headers({"A": "1"}) != {"A": 1} and Headers({"A": "1"}) != [("A", "1")]


def test_a_spiders_dict_becomes_headers_and_reads_back_in_any_case() -> None:
    request = Request("http://a.test/", headers={"Authorization": "Bearer t", "X-Token": b"s"})
    assert isinstance(request.headers, Headers)
    assert request.headers["authorization"] == "Bearer t" and request.headers["x-token"] == "s"
    request.headers["x-more"] = "1"  # changed in place, as users write it: kept
    assert request.headers["X-More"] == "1"
    copy = request.replace(url="http://a.test/2")
    copy.headers["X-More"] = "2"
    assert request.headers["x-more"] == "1" and copy.headers["x-more"] == "2"
    request.headers = {"Only": "this"}
    assert list(request.headers) == ["Only"]
    response = Response("http://a.test/", 200, {"content-type": "text/html"}, b"", request)
    assert response.headers["Content-Type"] == "text/html" and response.content_type == "text/html"


def test_a_request_without_headers_pickles_none_of_them() -> None:
    """The links a page yields cross two Pipes each: no headers must cost nothing there."""
    request = Request("http://a.test/")
    assert not request.headers  # read, so made: still pickled as none
    assert b"Headers" not in pickle.dumps(request, pickle.HIGHEST_PROTOCOL)
    assert not pickle.loads(pickle.dumps(request, pickle.HIGHEST_PROTOCOL)).headers


def test_headers_round_trip_through_pickle_and_safepickle() -> None:
    headers = Headers([("Set-Cookie", COOKIES[0]), ("Content-Type", "text/html"), ("SET-COOKIE", COOKIES[1])])
    plain = pickle.loads(pickle.dumps(headers, pickle.HIGHEST_PROTOCOL))
    for back in (plain, safepickle.loads(safepickle.dumps(headers))):
        assert isinstance(back, Headers) and back == headers and list(back) == ["Set-Cookie", "Content-Type"]
        assert back.getlist("set-cookie") == COOKIES
    request = Request("http://a.test/", headers=headers, meta={"also": Headers({"X": "1"})})
    back_request = safepickle.load_request(safepickle.dumps(request))
    assert back_request.headers == headers and back_request.meta["also"]["x"] == "1"


def test_safepickle_refuses_headers_that_are_not_well_formed() -> None:
    good = Headers({"X": "1"})
    for state in (
        ({"x": "X"}, {"x": "1"}),  # a value that is not a list of values
        ({"x": "X"}, {"x": []}),  # a name without values
        ({"X": "X"}, {"X": ["1"]}),  # a key that is not the lower-cased name
        ({"x": "X"}, {"y": ["1"]}),  # names and values apart
        ({"x": "X"}, {"x": [1]}),
        ("x", "y"),
    ):
        object.__setattr__(good, "_names", state[0])
        object.__setattr__(good, "_values", state[1])
        with pytest.raises(pickle.UnpicklingError, match="Headers state"):
            safepickle.loads(pickle.dumps(good, pickle.HIGHEST_PROTOCOL))
    # A pickle that calls Headers with arguments would have __init__ copy them: refused.
    blob = pickle.dumps(Headers, pickle.HIGHEST_PROTOCOL)[:-1] + b"]\x85R."  # Headers([])
    with pytest.raises(pickle.UnpicklingError, match="calls Headers with arguments"):
        safepickle.loads(blob)


def test_a_redirect_to_another_origin_drops_credentials_and_keeps_repeats() -> None:
    source = Request("http://a.test/", headers=[("Cookie", "a=1"), ("X-Tag", "1"), ("x-tag", "2"),
                                                 ("authorization", "Basic x")])
    follow = redirect_request(source, "http://b.test/")
    assert follow.headers == {"X-Tag": ["1", "2"]} and follow.headers.getlist("x-tag") == ["1", "2"]
    assert source.headers.getlist("cookie") == ["a=1"]  # the original is left as it was
