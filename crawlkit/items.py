"""Items: what a callback yields besides requests, as dicts, dataclasses, attrs classes or ``Item``s.

Every kind goes through **itemadapter**, the library Scrapy uses for the same job, so a spider's
item classes work unchanged. ``Item`` and ``Field`` are crawlkit's own copy of Scrapy's (a
mapping whose keys are the declared fields), registered with itemadapter here; Scrapy's own
``Item`` works too when Scrapy is installed.

Pipelines receive an item as the callback yielded it. After them, in the parser process, it
becomes a plain dict (``as_dict``), its keys in the order the class declares its fields: the
engine's feed writers take dicts, and a dict pickles without the user's class.
"""

from __future__ import annotations

from abc import ABCMeta
from collections.abc import Iterator, KeysView, MutableMapping
from types import MappingProxyType
from typing import Any, ClassVar

from itemadapter import ItemAdapter
from itemadapter.adapter import AdapterInterface


class Field(dict[str, Any]):
    """A declared field of an ``Item``, with its metadata (for other tools: crawlkit reads none)."""


class _ItemMeta(ABCMeta):
    """Collects the class's ``Field`` attributes, the bases' first, into ``fields``, in declaration order.

    Scrapy lists them alphabetically (it walks ``dir()``); declared order is what an export's
    columns should follow.
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _ItemMeta:
        fields: dict[str, Field] = {}
        for base in reversed(bases):
            fields.update(getattr(base, "fields", {}))
        fields.update((key, value) for key, value in namespace.items() if isinstance(value, Field))
        body = {key: value for key, value in namespace.items() if not isinstance(value, Field)}
        cls = super().__new__(mcs, name, bases, body)
        cls.fields = fields  # type: ignore[attr-defined]
        return cls


class Item(MutableMapping[str, Any], metaclass=_ItemMeta):
    """A dict-like item that takes only the keys declared as ``Field()`` class attributes (Scrapy's Item).

    ::

        class Quote(Item):
            text = Field()
            author = Field()

    ``item["text"] = ...`` sets a field; an undeclared key raises KeyError, so a typo in a
    field name fails where it is made. Keys iterate in declaration order, whatever order they
    were set in.
    """

    fields: ClassVar[dict[str, Field]]
    _values: dict[str, Any]  # the fields set, in the order set

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "_values", {})
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.fields:
            raise KeyError(f"{type(self).__name__} does not support field: {key}")
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.fields if key in self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name in type(self).fields:
            raise AttributeError(f"use item[{name!r}] to get a field's value")
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"use item[{name!r}] = {value!r} to set a field's value")

    def copy(self) -> Item:
        return type(self)(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class _ItemAdapter(AdapterInterface):
    """Lets itemadapter (and so every tool built on it) read and write crawlkit's ``Item``."""

    item: Item

    @classmethod
    def is_item_class(cls, item_class: type) -> bool:
        return issubclass(item_class, Item)

    @classmethod
    def get_field_meta_from_class(cls, item_class: type, field_name: str) -> MappingProxyType:
        return MappingProxyType(item_class.fields[field_name])  # type: ignore[attr-defined]

    @classmethod
    def get_field_names_from_class(cls, item_class: type) -> list[str] | None:
        return list(item_class.fields)  # type: ignore[attr-defined]

    def field_names(self) -> KeysView:
        return KeysView(self.item.fields)

    def __getitem__(self, field_name: str) -> Any:
        return self.item[field_name]

    def __setitem__(self, field_name: str, value: Any) -> None:
        self.item[field_name] = value

    def __delitem__(self, field_name: str) -> None:
        del self.item[field_name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.item)

    def __len__(self) -> int:
        return len(self.item)


# Before the dict adapter: an Item is a mapping but not a dict, so order matters only for speed.
ItemAdapter.ADAPTER_CLASSES.appendleft(_ItemAdapter)  # type: ignore[attr-defined]


def is_item(obj: Any) -> bool:
    """Whether ``obj`` is an item: a dict first (most are, and cost one type check), else any kind itemadapter knows."""
    return type(obj) is dict or ItemAdapter.is_item(obj)


def as_dict(item: Any) -> dict[str, Any]:
    """``item`` as a plain dict for the feed writers, nested items too; a dict is returned as it is."""
    return item if type(item) is dict else ItemAdapter(item).asdict()
