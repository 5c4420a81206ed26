"""Settings: layer precedence, origins, ``-s`` parsing, and the wording of every error."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import yaml

from crawlkit.errors import ConfigError
from crawlkit.settings import (
    DEFAULTS_FILE,
    SCRAPY_MISSING,
    SCRAPY_SETTINGS,
    Settings,
    explain,
    load_settings,
    settings_doc,
)


@pytest.fixture
def config(tmp_path: Path):
    """Write a config file from text and return its path."""

    def write(text: str, name: str = "x.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and default.yaml ---


def test_defaults_come_from_default_yaml():
    settings = load_settings()
    declared = yaml.safe_load(DEFAULTS_FILE.read_text())
    assert settings.as_dict() == declared
    assert all(settings.origin(key) == "default" for key in settings)


def test_default_yaml_is_a_package_file_and_configs_holds_a_copy():
    # The package's file is the source (a wheel carries it; a symlink out of the package would not
    # survive every way of installing); configs/default.yaml is the copy users read.
    root = Path(__file__).parents[1]
    assert DEFAULTS_FILE == root / "crawlkit" / "default.yaml"
    assert DEFAULTS_FILE.is_file() and not DEFAULTS_FILE.is_symlink()
    copy = root / "configs" / "default.yaml"
    assert not copy.is_symlink()
    assert copy.read_bytes() == DEFAULTS_FILE.read_bytes(), "cp crawlkit/default.yaml configs/default.yaml"
    assert "The source is crawlkit/default.yaml" in DEFAULTS_FILE.read_text(encoding="utf-8").splitlines()[0]


def test_brief_defaults():
    s = load_settings()
    assert (s.workers, s.concurrency, s.per_host, s.delay, s.parsers) == (None, 16, 2, 0.0, 1)
    assert (s.max_pages, s.max_depth, s.max_url_length) == (0, 0, 2083)
    assert s.allowed_domains == ()
    assert s.user_agent == "crawlkit/0.1 (+https://crawlkit.invalid/bot)"
    assert s.robots is True
    assert (s.retries, s.retry_backoff, s.retry_after_max) == (2, 0.5, 120)
    assert s.retry_http_codes == (429, 500, 502, 503, 504, 408)
    assert (s.connect_timeout, s.read_timeout, s.download_timeout) == (10.0, 30.0, 120.0)
    assert (s.max_body, s.max_redirects) == (10485760, 10)
    assert (s.output, s.log_level, s.log_file, s.spider) == (None, "INFO", None, None)
    assert s.shutdown_timeout == 10.0


def test_every_setting_has_a_comment():
    doc = settings_doc()
    assert [key for key, _, _ in doc] == list(load_settings())
    missing = [key for key, _, comment in doc if not comment]
    assert not missing, f"write a comment line directly above {missing} in configs/default.yaml"


def test_settings_doc_pairs_each_key_with_its_own_comment():
    doc = {key: (default, comment) for key, default, comment in settings_doc()}
    assert doc["per_host"] == (2, "Requests in flight to one host at once, at most; up to 1024 (as concurrency).")
    assert doc["workers"][1].startswith("(int or null) ")
    assert doc["allowed_domains"] == ([], doc["allowed_domains"][1])
    assert doc["allowed_domains"][1].startswith("(list of str) ")


def test_settings_doc_returns_copies():
    dict((key, default) for key, default, _ in settings_doc())["allowed_domains"].append("x")
    assert load_settings().allowed_domains == ()


def test_example_config_loads():
    settings = load_settings(Path(__file__).parents[1] / "configs" / "example.yaml")
    assert settings.per_host == 1
    assert settings.origin("per_host").startswith("config file ")


# --- precedence and origins ---


def test_precedence_and_origins(config):
    path = config("per_host: 3\ndelay: 1\nmax_pages: 10\nrobots: false\n")
    settings = load_settings(
        path,
        spider_settings={"delay": 2.5, "max_pages": 20},
        cli={"max_pages": "30", "concurrency": None},
    )
    assert (settings.per_host, settings.delay, settings.max_pages) == (3, 2.5, 30)
    assert settings.robots is False
    assert settings.concurrency == 16
    assert settings.origin("per_host") == f"config file {path}"
    assert settings.origin("delay") == "spider custom_settings"
    assert settings.origin("max_pages") == "command line"
    assert settings.origin("concurrency") == "default"
    assert ("max_pages", 30, "command line") in explain(settings)
    assert [row[0] for row in explain(settings)] == [key for key, _, _ in settings_doc()]


def test_typed_flag_values_are_checked_as_given():
    settings = load_settings(cli={"robots": False, "workers": 4, "delay": 1, "output": "out.csv"})
    assert (settings.robots, settings.workers, settings.output) == (False, 4, "out.csv")
    assert settings.delay == 1.0 and isinstance(settings.delay, float)


def test_empty_file_and_comment_only_file_set_nothing(config):
    for text in ("", "# nothing here\n"):
        settings = load_settings(config(text))
        assert all(settings.origin(key) == "default" for key in settings)


# --- the Settings object ---


def test_attribute_and_item_access_are_read_only():
    settings = load_settings(cli={"allowed_domains": "[a.com]"})
    assert settings.per_host == settings["per_host"] == 2
    assert "per_host" in settings and len(settings) == len(settings_doc())
    with pytest.raises(AttributeError):
        settings.per_host = 3
    with pytest.raises(TypeError):
        settings["per_host"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError, match="no setting named 'per_hots'"):
        settings.per_hots  # noqa: B018
    assert settings.allowed_domains == ("a.com",)
    as_dict = settings.as_dict()
    as_dict["allowed_domains"].append("b.com")
    assert as_dict["allowed_domains"] == ["a.com", "b.com"]
    assert settings.allowed_domains == ("a.com",)


def test_settings_pickle_for_child_processes():
    settings = load_settings(cli={"per_host": 5})
    copy = pickle.loads(pickle.dumps(settings))
    assert isinstance(copy, Settings)
    assert copy == settings and copy.origin("per_host") == "command line"


# --- -s KEY=VALUE parsing ---


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("per_host", "3", 3),
        ("robots", "false", False),
        ("robots", "True", True),
        ("allowed_domains", "[a.com,b.com]", ("a.com", "b.com")),
        ("allowed_domains", "[]", ()),
        ("retry_http_codes", "[500, 503]", (500, 503)),
        ("delay", "2", 2.0),
        ("delay", "1e-3", 0.001),
        ("delay", ".5", 0.5),
        ("workers", "null", None),
        ("workers", "4", 4),
        ("output", "-", "-"),
        ("output", "null", None),
        ("output", "", None),
        ("user_agent", "bot: 1.0 # yes", "bot: 1.0 # yes"),
        ("log_level", "debug", "DEBUG"),
        ("log_file", "2024-01-01.log", "2024-01-01.log"),
    ],
)
def test_dash_s_values(key, text, value):
    assert load_settings(cli={key: text})[key] == value


# --- error messages ---


def test_unknown_key_in_file_names_file_line_and_suggestion(config):
    path = config("concurrency: 8\n\n# typo below\nper_hots: 3\n")
    assert config_error(config_file=path) == (
        f"{path}, line 4: unknown setting 'per_hots'; did you mean 'per_host'? "
        "(see configs/default.yaml for every setting)"
    )


def test_unknown_key_without_a_close_match(config):
    message = config_error(config_file=config("zzqqxx: 1\n"))
    assert message.endswith("line 1: unknown setting 'zzqqxx' (see configs/default.yaml for every setting)")


def test_bad_value_in_file_names_file_line_key_and_value(config):
    path = config("concurrency: 8\nrobots: true\nper_host: two\n")
    assert config_error(config_file=path) == f"{path}, line 3: 'per_host' must be an integer from 1 to 1,024, got 'two'"


def test_relative_path_is_shown_as_given(config, monkeypatch):
    path = config("per_host: 0\n")
    monkeypatch.chdir(path.parent)
    assert config_error(config_file="x.yaml") == "x.yaml, line 1: 'per_host' must be an integer from 1 to 1,024, got 0"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("per_host", 0, "an integer from 1 to 1,024, got 0"),
        ("workers", 0, "an integer from 1 to 24 or null, got 0"),
        ("concurrency", 1.5, "an integer from 1 to 1,024, got 1.5"),
        ("parsers", True, "an integer from 1 to 16, got true"),
        ("retries", -1, "an integer from 0 to 100, got -1"),
        ("max_depth", -2, "an integer ≥ 0, got -2"),
        ("max_pages", "10", "an integer ≥ 0, got '10'"),
        ("delay", -0.5, "a finite number from 0 to 86,400, got -0.5"),
        ("read_timeout", float("nan"), "a finite number > 0 and ≤ 86,400, got nan"),
        ("robots", "yes", "true or false, got 'yes'"),
        ("robots", 1, "true or false, got 1"),
        ("robots", None, "true or false, got null"),
        ("allowed_domains", "a.com", "a list of strings, got 'a.com'"),
        ("allowed_domains", ["a.com", 3], "a list of strings, got ['a.com', 3]"),
        ("retry_http_codes", [500, "503"], "a list of integers, got [500, '503']"),
        ("user_agent", 5, "a string, got 5"),
        ("output", 5, "a string or null, got 5"),
        ("log_level", "verbose", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'"),
    ],
)
def test_bad_values_from_the_spider(key, value, expected):
    message = config_error(spider_settings={key: value})
    assert message == f"spider custom_settings: '{key}' must be {expected}"


def test_yaml_one_point_one_booleans_are_not_booleans(config):
    for word in ("yes", "no", "on", "off", "y"):
        message = config_error(config_file=config(f"robots: {word}\n"))
        assert message.endswith(f"line 1: 'robots' must be true or false, got '{word}'")


def test_dash_s_errors_show_the_argument():
    assert config_error(cli={"per_host": "0"}) == "-s per_host=0: 'per_host' must be an integer from 1 to 1,024, got 0"
    assert config_error(cli={"robots": "yes"}) == "-s robots=yes: 'robots' must be true or false, got 'yes'"
    assert config_error(cli={"per_hots": "3"}) == (
        "-s per_hots=3: unknown setting 'per_hots'; did you mean 'per_host'? "
        "(see configs/default.yaml for every setting)"
    )
    assert config_error(cli={"allowed_domains": "[a.com"}).startswith(
        "-s allowed_domains=[a.com: not valid YAML: "
    )


def test_typed_flag_errors_say_command_line():
    assert config_error(cli={"workers": 0}) == "command line: 'workers' must be an integer from 1 to 24 or null, got 0"


def test_unknown_spider_setting():
    assert config_error(spider_settings={"dealy": 1}).startswith(
        "spider custom_settings: unknown setting 'dealy'; did you mean 'delay'?"
    )


def test_yaml_syntax_error_names_file_and_line(config):
    path = config("per_host: 2\nallowed_domains: [a.com\ndelay: 1\n")
    message = config_error(config_file=path)
    assert re.fullmatch(rf"{re.escape(str(path))}, line 2: not valid YAML: .+", message), message  # where the "[" opens


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.yaml"
    assert config_error(config_file=path) == f"{path}: no such config file"


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("just words\n", "a single value")])
def test_top_level_must_be_a_mapping(config, text, got):
    message = config_error(config_file=config(text))
    assert message.endswith(f"line 1: the file must be a mapping of 'setting: value' lines, got {got}")


def test_a_key_set_twice_is_an_error(config):
    message = config_error(config_file=config("delay: 1\nper_host: 2\ndelay: 2\n"))
    assert message.endswith("line 3: 'delay' is set twice (first on line 1)")


def test_non_string_key(config):
    assert config_error(config_file=config("3: 4\n")).endswith("line 1: setting names are words, got 3")


def test_block_list_value_error_points_at_its_key(config):
    path = config("per_host: 2\nallowed_domains:\n  - a.com\n  - 42\n")
    assert config_error(config_file=path) == (
        f"{path}, line 2: 'allowed_domains' must be a list of strings, got ['a.com', 42]"
    )


# --- Scrapy's setting names ---


def test_scrapy_names_set_crawlkit_settings_in_every_layer(config):
    path = config("DOWNLOAD_DELAY: 1.5\nROBOTSTXT_OBEY: false\n")
    settings = load_settings(
        config_file=path,
        spider_settings={"CONCURRENT_REQUESTS_PER_DOMAIN": 4, "USER_AGENT": "ported/1.0", "DEPTH_LIMIT": 3},
        cli={"CLOSESPIDER_PAGECOUNT": "50", "RETRY_HTTP_CODES": "[500, 503]", "LOG_LEVEL": "debug"},
    )
    assert (settings.delay, settings.robots) == (1.5, False)
    assert (settings.per_host, settings.user_agent, settings.max_depth) == (4, "ported/1.0", 3)
    assert (settings.max_pages, settings.retry_http_codes, settings.log_level) == (50, (500, 503), "DEBUG")
    assert settings.origin("delay") == f"config file {path}"
    assert settings.origin("per_host") == "spider custom_settings"
    assert settings.origin("max_pages") == "command line"


def test_a_later_layer_wins_whichever_name_it_uses():
    settings = load_settings(spider_settings={"DOWNLOAD_DELAY": 2}, cli={"delay": "0.5"})
    assert settings.delay == 0.5
    assert load_settings(spider_settings={"delay": 2}, cli={"DOWNLOAD_DELAY": "3"}).delay == 3.0


def test_scrapy_component_maps_become_ordered_class_lists():
    settings = load_settings(spider_settings={
        "ITEM_PIPELINES": {"shop.pipelines.Prices": 300, "shop.pipelines.Clean": 100, "off.Pipeline": None,
                           "pipes.py:Store": 800},
        "DOWNLOADER_MIDDLEWARES": {"scrapy.downloadermiddlewares.useragent.UserAgentMiddleware": None,
                                   "shop.middlewares.Auth": 543},
    })
    assert settings.pipelines == ("shop.pipelines:Clean", "shop.pipelines:Prices", "pipes.py:Store")
    assert settings.middlewares == ("shop.middlewares:Auth",)
    assert load_settings(cli={"ITEM_PIPELINES": "{a.B: 2, c.D: 1}"}).pipelines == ("c:D", "a:B")


def test_a_scrapy_name_given_with_s_is_read_as_scrapys_value_not_as_the_crawlkit_settings():
    # http_cache is a string (a directory); HTTPCACHE_ENABLED a boolean, as Scrapy users write it.
    assert load_settings(cli={"HTTPCACHE_ENABLED": "True"}).http_cache == "httpcache"
    assert load_settings(cli={"HTTPCACHE_ENABLED": "false"}).http_cache is None
    assert load_settings(cli={"HTTPCACHE_DIR": "true"}).http_cache == "true"  # no converter: verbatim
    assert load_settings(cli={"HTTPCACHE_POLICY": "scrapy.extensions.httpcache.RFC2616Policy"}).http_cache_rfc9111


def test_scrapy_units_and_zero_for_no_limit():
    assert load_settings(spider_settings={"DOWNLOAD_MAXSIZE": 2048}).max_body == 2048  # bytes, as Scrapy's
    assert load_settings(spider_settings={"DOWNLOAD_MAXSIZE": 0}).max_body == 1 << 30  # Scrapy's 0: no limit
    assert load_settings(spider_settings={"DOWNLOAD_TIMEOUT": 30}).download_timeout == 30.0  # seconds
    assert load_settings(cli={"URLLENGTH_LIMIT": "500"}).max_url_length == 500
    assert load_settings(cli={"URLLENGTH_LIMIT": "0"}).max_url_length == 65_536  # Scrapy's 0: no limit


def test_a_bad_value_under_a_scrapy_name_names_both():
    assert config_error(spider_settings={"DOWNLOAD_DELAY": -1}) == (
        "spider custom_settings (DOWNLOAD_DELAY is crawlkit's delay): "
        "'delay' must be a finite number from 0 to 86,400, got -1"
    )
    assert config_error(spider_settings={"ITEM_PIPELINES": ["a.B"]}) == (
        "spider custom_settings (ITEM_PIPELINES is crawlkit's pipelines): "
        "'ITEM_PIPELINES' must be a mapping of class paths to order numbers or null, got ['a.B']"
    )


@pytest.mark.parametrize(("key", "advice"), [
    ("TELNETCONSOLE_ENABLED", "there is no telnet console"),
    ("FEEDS", "one feed: -o FILE or -O FILE"),
    ("SPIDER_MIDDLEWARES", "page stages take their place"),
])
def test_scrapy_settings_crawlkit_lacks_say_what_to_do(key, advice):
    message = config_error(spider_settings={key: True})
    assert message.startswith(f"spider custom_settings: Scrapy's {key} is not a crawlkit setting; {advice}")


def test_an_unknown_upper_case_name_is_taken_for_a_scrapy_setting(config):
    path = config("delay: 1\nMONGO_URI: x\n")
    assert config_error(config_file=path).startswith(f"{path}, line 2: MONGO_URI looks like a Scrapy setting")
    assert "Coming from Scrapy" in config_error(cli={"MY_SETTING": "1"})


def test_every_scrapy_name_maps_to_a_setting_and_none_is_both():
    specs = settings_doc()
    keys = {key for key, _, _ in specs}
    assert {alias.key for alias in SCRAPY_SETTINGS.values()} <= keys
    assert not SCRAPY_SETTINGS.keys() & SCRAPY_MISSING.keys()
