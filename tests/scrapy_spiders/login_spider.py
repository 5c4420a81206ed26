"""The members' quotes behind a login form, in Scrapy's idioms: ``start_urls`` set in ``__init__`` from
an argument, ``FormRequest.from_response`` (the CSRF token comes from the form), a session cookie, an errback
reading the failed response, ``response.json()``, ``follow_all`` on selectors.

Runs unchanged on crawlkit and (with its import line rewritten) on Scrapy:
``crawlkit runspider login_spider.py -a base=http://127.0.0.1:PORT -o out.jsonl``.
"""

from crawlkit import FormRequest, Request, Spider


class LoginSpider(Spider):
    name = "login"
    base = "http://127.0.0.1:8000"  # -a base=URL
    user = "ann"  # -a user=NAME

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # sets the -a arguments, base among them
        self.start_urls = [self.base + "/login"]

    def parse(self, response):
        yield FormRequest.from_response(response, formname="login", formdata={"user": self.user, "pass": "s3cret"},
                                        callback=self.after_login)

    def after_login(self, response):
        if not response.css("p::text").get(default="").startswith("Welcome"):
            self.logger.error("login failed for %s", self.user)
            return
        yield from response.follow_all(response.css("a.start"), callback=self.parse_members)
        yield response.follow("/api/count", callback=self.parse_count)
        yield Request(self.base + "/missing", callback=self.parse_members, errback=self.failed)

    def parse_members(self, response):
        for quote in response.css("div.quote"):
            yield {"text": quote.css("span.text::text").get(), "tags": quote.css("a.tag::text").getall()}

    def parse_count(self, response):
        data = response.json()
        yield {"count": data["quotes"], "user": data["user"]}

    def failed(self, failure):
        response = getattr(failure.value, "response", None)  # an HTTP error's response, in both crawlers
        yield {"failed": failure.request.url, "status": response.status if response is not None else None}
