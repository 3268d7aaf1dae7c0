"""What a ``metadata`` setting names: a ``MetaData``, ``"module:attribute"``, or a list of them.

The runner's ``metadata=``, ``[tool.sqlmig] metadata`` and ``--metadata`` all
come here, so the rules live once:

- a ``sqlalchemy.MetaData`` is used as it is;
- a string ``"myapp.db:metadata"`` imports module ``myapp.db`` and takes its
  attribute ``metadata`` (a dotted path after the colon, such as
  ``"myapp.models:Base.metadata"``, walks attributes), which must be a
  ``MetaData``;
- a list (or tuple) holds any number of those.

Strings are kept as they are until the MetaData is needed (:meth:`Models.resolve`),
so configuring a runner imports nothing of the application.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from collections.abc import Sequence
from typing import TypeAlias

from sqlalchemy import MetaData

from ._errors import ConfigError

__all__ = ["MetadataArgument", "Models", "checked_setting"]

#: What ``metadata=`` accepts.
MetadataArgument: TypeAlias = "MetaData | str | Sequence[MetaData | str]"

#: ``package.module:attribute.attribute``
REFERENCE = re.compile(
    r"(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)"
)


def checked_setting(value: object, where: str = "metadata") -> list[MetaData | str]:
    """The items of a ``metadata`` value, each a ``MetaData`` or a well-formed reference.

    Raises:
        ConfigError: an item is neither, or a list is empty; the message names it.
    """
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(
            f"{where} is an empty list: name at least one MetaData as 'module:attribute'",
            key="metadata",
        )
    checked: list[MetaData | str] = []
    for item in items:
        if isinstance(item, MetaData):
            checked.append(item)
        elif isinstance(item, str) and REFERENCE.fullmatch(item.strip()) is not None:
            checked.append(item.strip())
        else:
            raise _not_a_reference(item, where)
    return checked


class Models:
    """The MetaData a runner compares the database with, as configured."""

    __slots__ = ("items",)

    def __init__(self, value: MetadataArgument) -> None:
        self.items = checked_setting(value)

    def resolve(self) -> list[MetaData]:
        """Each MetaData, references imported.

        Raises:
            ConfigError: no such module or attribute, not a MetaData, or the
                module raised while importing (its file and line given).
        """
        return [i if isinstance(i, MetaData) else load(i) for i in self.items]


def load(reference: str) -> MetaData:
    """The MetaData ``reference`` (``"module:attribute"``) names.

    Raises:
        ConfigError: as :meth:`Models.resolve`.
    """
    match = REFERENCE.fullmatch(reference)
    if match is None:
        raise _not_a_reference(reference, "metadata")
    module_name, attributes = match["module"], match["attr"]
    try:
        value: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and not _within(module_name, exc.name):
            raise _import_failed(reference, exc) from exc
        raise ConfigError(
            f"metadata {reference!r}: there is no module {module_name!r} to import: check the "
            "name (modules are imported from the config file's folder and the current directory)",
            key="metadata",
        ) from exc
    except Exception as exc:
        raise _import_failed(reference, exc) from exc
    for i, attribute in enumerate(attributes.split(".")):
        if not hasattr(value, attribute):
            owner = ".".join([module_name, *attributes.split(".")[:i]])
            raise ConfigError(
                f"metadata {reference!r}: {owner} has no attribute {attribute!r}: "
                "name the MetaData (or Base.metadata) the module defines",
                key="metadata",
            )
        value = getattr(value, attribute)
    if not isinstance(value, MetaData):
        raise ConfigError(
            f"metadata {reference!r} is a {type(value).__name__}, not a sqlalchemy MetaData: "
            "name the MetaData itself (for an ORM, its Base.metadata)",
            key="metadata",
        )
    return value


def _not_a_reference(item: object, where: str) -> ConfigError:
    return ConfigError(
        f"{where} {item!r} is not a MetaData nor a 'module:attribute' reference: "
        "write it as 'myapp.db:metadata' (the module, a colon, the attribute)",
        key="metadata",
    )


def _within(module_name: str, missing: str) -> bool:
    """Whether the missing module is ``module_name`` or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")


def _import_failed(reference: str, exc: BaseException) -> ConfigError:
    """The error for a metadata module that raised while importing, with its file and line."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" at {exc.filename}:{exc.lineno}"
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _importlib(f.filename)]
        if frames:
            where = f" at {frames[-1].filename}:{frames[-1].lineno}"
    sys.modules.pop(reference.partition(":")[0], None)
    return ConfigError(
        f"metadata {reference!r}: importing its module raised {type(exc).__name__}{where}: "
        f"{exc}; fix the module",
        key="metadata",
    )


def _importlib(filename: str) -> bool:
    return (
        filename.startswith("<frozen importlib")
        or filename == importlib.__file__
        or (filename.endswith(("importlib/__init__.py", "sqlmig/_models.py")))
    )
