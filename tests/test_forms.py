"""Requests as Scrapy builds them: FormRequest (and from_response on a login form), JsonRequest,
replace() of every field, and cb_kwargs/errback travelling pickled, also through safepickle."""

from __future__ import annotations

import json
import pickle
from urllib.parse import parse_qsl

import pytest

from crawlkit import FormRequest, Headers, JsonRequest, Request, Response, safepickle

LOGIN = """<html><head><base href="/account/"></head><body>
<form id="search" action="/search"><input name="q" value="old"><input type="submit" value="Go"></form>
<form name="login" action="session?next=%2F" method="post">
  <input type="hidden" name="csrf" value="t0k3n">
  <input name="user"><input type="password" name="pass" value="">
  <input type="checkbox" name="remember" value="yes" checked><input type="checkbox" name="news" value="1">
  <input type="radio" name="plan" value="free"><input type="radio" name="plan" value="pro" checked>
  <select name="lang"><option value="en">English<option value="fr" selected>French</select>
  <select name="tz"><option>UTC<option>CET</select>
  <select name="topics" multiple><option selected>a<option>b<option selected>c</select>
  <textarea name="bio">hello</textarea>
  <input name="off" value="x" disabled><input type="file" name="photo"><input type="reset" name="r">
  <input type="button" name="b" value="js">
  <input type="submit" name="action" value="Log in"><button name="action" value="sso">SSO</button>
</form></body></html>"""


def page() -> Response:
    return Response("http://shop.test/account/login", body=LOGIN)


def fields(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.body.decode(), keep_blank_values=True)


def test_from_response_submits_a_login_form_as_a_browser_would() -> None:
    request = FormRequest.from_response(page(), formname="login", formdata={"user": "ann", "pass": "s3cret"},
                                        callback="after_login", cb_kwargs={"who": "ann"})
    assert isinstance(request, FormRequest)
    assert (request.method, request.url) == ("POST", "http://shop.test/account/session?next=%2F")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    # The form's own values (hidden token, checked boxes, selected options) but those given,
    # the first submit button, then formdata; disabled fields, reset and plain buttons are not sent.
    assert fields(request) == [
        ("csrf", "t0k3n"), ("remember", "yes"), ("plan", "pro"), ("lang", "fr"), ("tz", "UTC"), ("topics", "a"),
        ("topics", "c"), ("bio", "hello"), ("photo", ""), ("action", "Log in"), ("user", "ann"), ("pass", "s3cret"),
    ]
    assert (request.callback, request.cb_kwargs) == ("after_login", {"who": "ann"})


def test_from_response_finds_the_form_by_id_number_xpath_or_css() -> None:
    for how in ({"formid": "search"}, {"formnumber": 0}, {"formxpath": "//input[@name='q']"},
                {"formcss": "input[name=q]"}, {"formname": "nope", "formid": "search"}):
        request = FormRequest.from_response(page(), formdata={"q": "shoes"}, **how)
        assert (request.method, request.url, request.body) == ("GET", "http://shop.test/search?q=shoes", b""), how
    second = FormRequest.from_response(page(), formnumber=1, dont_click=True)
    assert second.url == "http://shop.test/account/session?next=%2F"
    assert ("action", "Log in") not in fields(second) and ("user", "") in fields(second)  # no value: sent empty
    with pytest.raises(IndexError, match="no form number 2"):
        FormRequest.from_response(page(), formnumber=2)
    with pytest.raises(ValueError, match="no <form> holds"):
        FormRequest.from_response(page(), formcss="p.nothing")
    with pytest.raises(ValueError, match="no <form> on"):
        FormRequest.from_response(Response("http://shop.test/", body="<p>none</p>"))


def test_from_response_clicks_the_button_clickdata_names_and_takes_url_and_method() -> None:
    sso = FormRequest.from_response(page(), formname="login", clickdata={"value": "sso"})
    assert ("action", "sso") in fields(sso) and ("action", "Log in") not in fields(sso)
    assert ("action", "sso") in fields(FormRequest.from_response(page(), formname="login", clickdata={"nr": 1}))
    with pytest.raises(ValueError, match="2 submit buttons match"):
        FormRequest.from_response(page(), formname="login", clickdata={"name": "action"})
    elsewhere = FormRequest.from_response(page(), formname="login", url="/other", method="put")
    assert elsewhere.method == "GET"  # a form sends GET or POST; any other method is GET, as in browsers
    assert elsewhere.url.startswith("http://shop.test/other?csrf=t0k3n&")


def test_form_request_encodes_formdata_in_the_body_or_the_query() -> None:
    post = FormRequest("http://shop.test/s", formdata={"q": "grüße & co", "tag": ["a", "b"], "skip": None})
    assert (post.method, post.body) == ("POST", b"q=gr%C3%BC%C3%9Fe+%26+co&tag=a&tag=b")
    get = FormRequest("http://shop.test/s?old=1", method="GET", formdata=[("q", "x"), ("q", "y")])
    assert (get.url, get.body) == ("http://shop.test/s?q=x&q=y", b"")
    latin = FormRequest("http://shop.test/s", formdata={"q": "é"}, encoding="latin-1")
    assert latin.body == b"q=%E9"
    assert FormRequest("http://shop.test/s").method == "GET"


def test_json_request_sends_data_as_json() -> None:
    request = JsonRequest("http://api.test/q", data={"b": [1, 2], "a": "x"}, callback="parse_api")
    assert (request.method, json.loads(request.body)) == ("POST", {"a": "x", "b": [1, 2]})
    assert request.body == b'{"a": "x", "b": [1, 2]}'  # keys sorted, as Scrapy's
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"].startswith("application/json")
    assert JsonRequest("http://api.test/q").method == "GET"
    assert JsonRequest("http://api.test/q", data={"a": 1}, method="PUT").method == "PUT"
    assert JsonRequest("http://api.test/q", data={"a": 1}, body=b"raw").body == b"raw"
    compact = JsonRequest("http://api.test/q", data={"a": 1}, dumps_kwargs={"separators": (",", ":")})
    assert compact.body == b'{"a":1}'
    changed = request.replace(data={"c": 3})
    assert isinstance(changed, JsonRequest) and changed.body == b'{"c": 3}' and changed.callback == "parse_api"


def test_replace_changes_any_field_and_copies_the_rest() -> None:
    request = Request("http://h.test/a", callback="parse_a", method="POST", headers={"X": "1"}, meta={"m": 1},
                      priority=2, dont_filter=True, body=b"b", depth=3, referer="http://h.test/",
                      cb_kwargs={"n": 1}, errback="failed")
    same = request.replace()
    assert type(same) is Request and same is not request
    assert [getattr(same, name) for name in Request.__slots__] == [getattr(request, name) for name in Request.__slots__]
    same.meta["m"] = 2
    same.cb_kwargs["n"] = 2
    same.headers["X"] = "2"
    assert (request.meta, request.cb_kwargs, request.headers["X"]) == ({"m": 1}, {"n": 1}, "1")
    changes = {"url": "http://h.test/b", "callback": "parse_b", "method": "GET", "headers": {"Y": "2"},
               "meta": {"k": 2}, "priority": -1, "dont_filter": False, "body": b"", "depth": 4, "referer": None,
               "cb_kwargs": {"page": 2}, "errback": "other"}
    for name, value in changes.items():
        changed = request.replace(**{name: value})
        assert getattr(changed, name) == (Headers(value) if name == "headers" else value), name
    with pytest.raises(TypeError):
        request.replace(nonsense=1)
    form = FormRequest("http://h.test/f", formdata={"a": "1"})
    assert type(form.replace(url="http://h.test/g")) is FormRequest
    assert form.replace(url="http://h.test/g").body == b"a=1"


def test_cb_kwargs_and_errback_travel_pickled_and_through_safepickle() -> None:
    request = Request("http://h.test/p", callback="parse_item", errback="on_error",
                      cb_kwargs={"page": 2, "tags": ["a"]})
    assert request.errback == "on_error"
    for back in (pickle.loads(pickle.dumps(request, pickle.HIGHEST_PROTOCOL)),
                 safepickle.load_request(safepickle.dumps(request))):
        assert (back.callback, back.errback, back.cb_kwargs) == ("parse_item", "on_error", {"page": 2, "tags": ["a"]})
    for made in (JsonRequest("http://h.test/j", data={"a": 1}, errback="on_error"),
                 FormRequest("http://h.test/f", formdata={"a": "1"}, cb_kwargs={"n": 1})):
        back = safepickle.load_request(safepickle.dumps(made))
        assert type(back) is type(made)
        assert [getattr(back, f) for f in Request.__slots__] == [getattr(made, f) for f in Request.__slots__]
    # A link with neither (most requests) carries two Nones: 2 bytes of its pickle.
    plain = Request("http://h.test/x")
    assert plain.__getstate__()[10:] == (None, None)
    plain.cb_kwargs["n"] = 1  # changed in place, as a middleware may
    assert pickle.loads(pickle.dumps(plain)).cb_kwargs == {"n": 1}


def test_what_a_read_back_request_carries_as_cb_kwargs_or_errback_is_checked() -> None:
    broken = Request("http://h.test/", cb_kwargs={"n": 1})
    broken.cb_kwargs = {1: "not a name"}  # type: ignore[dict-item]  # as a pickle written elsewhere may hold
    with pytest.raises(pickle.UnpicklingError, match="not a well-formed Request"):
        safepickle.load_request(pickle.dumps(broken, pickle.HIGHEST_PROTOCOL))
    broken = Request("http://h.test/")
    broken.errback = 3  # type: ignore[assignment]
    with pytest.raises(pickle.UnpicklingError, match="not a well-formed Request"):
        safepickle.load_request(pickle.dumps(broken, pickle.HIGHEST_PROTOCOL))


def test_a_request_journaled_before_cb_kwargs_and_errback_is_read_back_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = Request.__getstate__
    monkeypatch.setattr(Request, "__getstate__", lambda self: state(self)[:10])  # the state before the two
    blob = pickle.dumps(Request("http://h.test/p", callback="parse_item", meta={"m": 1}), pickle.HIGHEST_PROTOCOL)
    monkeypatch.undo()
    back = safepickle.load_request(blob)
    assert (back.url, back.callback, back.meta, back.cb_kwargs, back.errback) == (
        "http://h.test/p", "parse_item", {"m": 1}, {}, None)
