"""Reading settings YAML safely: YAML 1.2 scalars, no aliases, errors that name the file and line.

Apart from ``settings.py`` so that the processes which only unpickle a ``Settings`` (fetchers and
parsers get one for ``spider.settings``) never import PyYAML: ``settings.py`` imports this module
only when it reads a file or a ``-s`` value.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from crawlkit.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 scalars: only true/false are booleans, ``1e-3`` is a float.

    PyYAML follows YAML 1.1, where ``yes``, ``no``, ``on`` and ``off`` are booleans (so ``robots: yes``
    would pass as true by accident), ``1e-3`` is a string, and ``2024-01-01`` is a date.

    Aliases (``*name``) are refused: no setting needs one, and nested aliases of aliases (a
    "billion laughs" file) expand a few hundred bytes into gigabytes.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag.rsplit(":", 1)[-1] not in ("bool", "float", "timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def read_entries(text: str, path: str) -> list[tuple[Any, Any, int]]:
    """The (key, value, line of the key) entries of the YAML mapping ``text`` read from ``path``.

    A key that is not a string comes back as it is, with None for its value, so the caller can
    name it in its own terms."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return []
        if not isinstance(root, yaml.MappingNode):
            got = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise ConfigError(
                f"{path}, line {root.start_mark.line + 1}: "
                f"the file must be a mapping of 'setting: value' lines, got {got}"
            )
        entries: list[tuple[Any, Any, int]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                entries.append((key, None, line))  # the caller says what a setting name must be
                continue
            if key in first_line:
                raise ConfigError(
                    f"{path}, line {line}: '{key}' is set twice (first on line {first_line[key]})"
                )
            first_line[key] = line
            entries.append((key, loader.construct_object(value_node, deep=True), line))
        return entries
    except yaml.MarkedYAMLError as exc:
        mark = exc.context_mark or exc.problem_mark  # the context (an unclosed "[") is where to look
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    finally:
        loader.dispose()

def read_value(text: str, where: str) -> Any:
    """One YAML value given on the command line (``-s key=value``), ``where`` naming it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
