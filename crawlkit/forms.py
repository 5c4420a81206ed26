"""Requests whose body crawlkit builds: ``FormRequest`` (fields, or a page's ``<form>`` filled in), ``JsonRequest``.

They are Scrapy's, with the same arguments, so a login written for Scrapy runs unchanged::

    def parse(self, response):
        yield FormRequest.from_response(response, formdata={"user": "me", "pass": "s3cret"},
                                        callback=self.after_login)

Both are ``Request`` subclasses with no state of their own: once built they are plain requests
(method, URL, headers, body), so they pickle as cheaply and are read back from a job directory
or a shared crawl's Redis like any other (``safepickle`` knows them by name).
``from_response`` reads the form from the page's one lxml tree (``response.tree``), with lxml's
form helpers, rather than parsing the page again as Scrapy does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import lxml.html

from crawlkit.http import Callback, Request, Response

FieldValue = str | Iterable[str] | None  # a list repeats the field; None leaves it out
FormData = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]  # a dict, or (name, value) pairs in order

_METHODS = ("GET", "POST")  # what a <form> can send; any other method attribute means GET, as in browsers


class FormRequest(Request):
    """A request that sends form fields: ``FormRequest(url, formdata={"q": "shoes"})``.

    With ``formdata`` and no ``method`` it is a POST with an ``application/x-www-form-urlencoded``
    body; with ``method="GET"`` the fields replace the URL's query. ``encoding`` encodes the
    field values (UTF-8 unless given). Fields are sent in the order given.
    """

    __slots__ = ()

    def __init__(
        self,
        url: str,
        callback: Callback = None,
        method: str | None = None,
        formdata: FormData | None = None,
        *,
        encoding: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(url, callback, method or ("POST" if formdata else "GET"), **kwargs)
        if not formdata:
            return
        query = _urlencode(formdata, encoding)
        if self.method == "POST":
            self.headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            self.body = query.encode("ascii")
        else:
            self.url = urlunsplit(urlsplit(self.url)._replace(query=query))

    @classmethod
    def from_response(
        cls,
        response: Response,
        formname: str | None = None,
        formid: str | None = None,
        formnumber: int = 0,
        formdata: FormData | None = None,
        clickdata: Mapping[str, str | int] | None = None,
        dont_click: bool = False,
        formxpath: str | None = None,
        formcss: str | None = None,
        **kwargs: Any,
    ) -> FormRequest:
        """The request a browser would send submitting a form of ``response``, with ``formdata`` filled in.

        The form is the first of: the one named ``formname``, the one with id ``formid``, the
        one holding the first element ``formxpath`` or ``formcss`` selects, and else the
        ``formnumber``-th (0 = the first). Its fields keep their values (hidden ones: a login's
        CSRF token), ``formdata`` replaces or adds fields, and the first submit button is
        "clicked" (its name and value sent), or the one whose attributes are ``clickdata``
        (``{"name": "go"}``, or ``{"nr": 1}`` for the second), unless ``dont_click``. The URL is
        the form's ``action`` (else the page's), the method its ``method`` (GET or POST); both
        can be given instead, as ``url=`` and ``method=``. Other arguments are ``Request``'s.
        ``ValueError`` (``IndexError`` for ``formnumber``) when no such form or button exists.
        """
        form = _find_form(response, formname, formid, formnumber, formxpath, formcss)
        fields = _fields(form, formdata or (), None if dont_click else _clicked(form, clickdata))
        action = kwargs.pop("url", None) or (form.get("action") or "").strip()
        url = response.urljoin(action) if action else response.url
        method = str(kwargs.pop("method", None) or form.get("method") or "GET").upper()
        kwargs.setdefault("encoding", response.encoding)
        return cls(url, method=method if method in _METHODS else "GET", formdata=fields, **kwargs)


class JsonRequest(Request):
    """A request that sends JSON: ``JsonRequest(url, data={"query": "shoes"})``.

    ``data`` is serialised with ``json.dumps`` (``dumps_kwargs`` are passed on; keys are
    sorted unless they say otherwise) into the body, and makes the request a POST unless
    ``method`` says otherwise; a ``body`` given outranks ``data``, as in Scrapy. The headers
    ask for and announce JSON (``Content-Type`` and ``Accept``) unless given.
    """

    __slots__ = ()

    def __init__(
        self,
        url: str,
        callback: Callback = None,
        method: str | None = None,
        data: Any = None,
        dumps_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if data is not None and not kwargs.get("body"):
            kwargs["body"] = json.dumps(data, **{"sort_keys": True, **(dumps_kwargs or {})})
        super().__init__(url, callback, method or ("POST" if data is not None else "GET"), **kwargs)
        self.headers.setdefault("Content-Type", "application/json")
        self.headers.setdefault("Accept", "application/json, text/javascript, */*; q=0.01")

    def replace(self, **changes: Any) -> Request:
        """As ``Request.replace``; ``data=`` gives a new body (unless ``body=`` is given too)."""
        if changes.get("data") is not None and "body" not in changes:
            changes["body"] = b""
        return super().replace(**changes)


def _urlencode(formdata: FormData, encoding: str) -> str:
    pairs = formdata.items() if isinstance(formdata, Mapping) else formdata
    return urlencode([
        (name.encode(encoding), value.encode(encoding))
        for name, values in pairs if values is not None
        for value in ((values,) if isinstance(values, str) else values)
    ])


def _find_form(
    response: Response, formname: str | None, formid: str | None, formnumber: int, formxpath: str | None,
    formcss: str | None,
) -> lxml.html.FormElement:
    forms = response.tree.forms
    if not forms:
        raise ValueError(f"no <form> on {response.url}")
    for attribute, value in (("name", formname), ("id", formid)):
        if value is not None:
            named = [form for form in forms if form.get(attribute) == value]
            if named:
                return named[0]
    if formcss is not None:
        # Here: the engine imports this module (safepickle reads FormRequests back) and never a form.
        from parsel.csstranslator import HTMLTranslator

        formxpath = HTMLTranslator().css_to_xpath(formcss)
    if formxpath is not None:
        selected = response.tree.xpath(formxpath)
        element = selected[0] if selected else None
        while isinstance(element, lxml.html.HtmlElement) and not isinstance(element, lxml.html.FormElement):
            element = element.getparent()  # the form around what was selected, as Scrapy takes it
        if isinstance(element, lxml.html.FormElement):
            return element
        raise ValueError(f"no <form> holds what {formcss or formxpath!r} selects on {response.url}")
    try:
        return forms[formnumber]
    except IndexError:
        raise IndexError(f"no form number {formnumber} on {response.url}: it has {len(forms)}") from None


def _clicked(form: lxml.html.FormElement, clickdata: Mapping[str, str | int] | None) -> tuple[str, str] | None:
    """The (name, value) the submit button sends that a browser would press; None if it has no name."""
    buttons = form.xpath(
        "descendant::input[re:test(@type, '^(submit|image)$', 'i')]"
        "|descendant::button[not(@type) or re:test(@type, '^submit$', 'i')]",
        namespaces={"re": "http://exslt.org/regular-expressions"},
    )
    if not buttons:
        return None
    if not clickdata:
        button = buttons[0]
    elif "nr" in clickdata:
        try:
            button = buttons[int(clickdata["nr"])]
        except IndexError:
            raise ValueError(f"no submit button number {clickdata['nr']}: the form has {len(buttons)}") from None
    else:
        matches = [b for b in buttons if all(b.get(key) == str(value) for key, value in clickdata.items())]
        if len(matches) != 1:
            raise ValueError(f"{len(matches)} submit buttons match clickdata {dict(clickdata)!r}, not one")
        button = matches[0]
    name = button.get("name")
    return (name, button.get("value") or "") if name else None


def _values(form: lxml.html.FormElement) -> list[tuple[str, str]]:
    """The fields a browser sends of the form as it stands (``form_values()`` but a field with no
    ``value`` attribute, which lxml leaves out, is sent empty, as a browser does)."""
    values: list[tuple[str, str]] = []
    for field in form.inputs:
        name = field.name
        if not name or field.get("disabled") is not None:
            continue
        if isinstance(field, lxml.html.InputElement):
            if field.type in ("submit", "image", "reset", "button") or field.checkable and not field.checked:
                continue  # the clicked button is added apart
            values.append((name, field.value or ""))  # a file input sends its (empty) file name, as a browser's
        elif isinstance(field, lxml.html.SelectElement):
            selected = field.value  # multiple: the selected options; else one, the first if none is (None if no option)
            values.extend((name, value) for value in ([selected] if isinstance(selected, str) else selected or ()))
        else:
            values.append((name, field.value or ""))  # a <textarea>
    return values


def _fields(
    form: lxml.html.FormElement, formdata: FormData, clicked: tuple[str, str] | None,
) -> list[tuple[str, FieldValue]]:
    """The form's own fields but those ``formdata`` names, the button clicked, then ``formdata``'s: Scrapy's order."""
    given = list(formdata.items() if isinstance(formdata, Mapping) else formdata)
    names = {name for name, _ in given}
    fields: list[tuple[str, FieldValue]] = [(name, value) for name, value in _values(form) if name not in names]
    if clicked is not None and clicked[0] not in names:
        fields.append(clicked)
    return fields + given
