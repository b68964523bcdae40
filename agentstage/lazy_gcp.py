"""Load only the modules of a ``pulumi_gcp`` service package that a program uses.

The package ``__init__`` of a service (``pulumi_gcp.compute``) star-imports every resource and
function module of the service: about 290 for compute, of which a platform uses a handful. That
is most of the time a small offline plan takes (compute alone is 1.5 s of a 3.5 s plan). The
provider SDK already defers each service until its first attribute is read; this module defers
further, to the one submodule that defines the attribute.

A meta path finder gives each ``pulumi_gcp.<service>`` package (and nothing else) a loader that,
instead of running the package ``__init__``, reads which names each submodule exports (the
``__all__`` literal at the top of every generated module, in the order the ``__init__`` imports
them, so that a later star import wins as it does when the ``__init__`` runs) and resolves a name
when it is first read, by importing its submodule. The result is the object the ``__init__``
would have bound: the same class, from the same module. Whatever it cannot vouch for runs the
real ``__init__`` in the same module object, so the package then is exactly the eager one: a
package ``__init__`` with any statement other than the generated ones, a name no submodule
exports (an unknown attribute then fails with the usual message), ``__all__`` (a star import of
the package), ``dir()``, and a submodule whose ``__all__`` turns out to differ from what was read.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import threading
import types
from typing import Any

__all__ = ["install", "uninstall", "installed"]

_PROVIDER = "pulumi_gcp"

#: The statements of a generated service ``__init__`` besides its ``from .x import *`` and
#: ``from . import x`` lines: the name each binds -> the module it binds to it.
_PREAMBLE = {
    "import builtins as _builtins": ("_builtins", "builtins"),
    "import typing": ("typing", "typing"),
    "from .. import _utilities": ("_utilities", f"{_PROVIDER}._utilities"),
}
_STAR = re.compile(r"from \.([A-Za-z_][A-Za-z0-9_]*) import \*")
_SUBMODULE = re.compile(r"from \. import ([A-Za-z_][A-Za-z0-9_]*)")
_ALL_START = re.compile(rb"^__all__ = \[", re.M)
_NAME = re.compile(rb"""'([A-Za-z_][A-Za-z0-9_]*)'|"([A-Za-z_][A-Za-z0-9_]*)"|[\s,]+""")
#: Generated modules assign ``__all__`` right after their imports; a module that does not
#: within this many bytes is not one whose exports this module can read.
_HEAD = 16 * 1024


class _Pending:
    """A service package that has not run its ``__init__``: where each name comes from."""

    def __init__(self, loader: Any, index: dict[str, tuple[str, bool]], exports: dict[str, tuple[str, ...]]) -> None:
        self.loader = loader
        #: name -> (submodule, whether the name is an attribute the submodule exports; else
        #: the submodule itself)
        self.index = index
        self.exports = exports
        self.checked: set[str] = set()
        self.lock = threading.RLock()


#: Service package name -> what it needs until its ``__init__`` runs.
_PENDING: dict[str, _Pending] = {}


def _exports(path: str) -> tuple[str, ...] | None:
    """The names in the ``__all__ = [...]`` literal of a generated module, read from its
    source, or None when the module does not start with such a literal."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(_HEAD)
            start = _ALL_START.search(text)
            if start is None:
                return None
            end = text.find(b"]", start.end())
            while end < 0:
                more = fh.read(1024 * 1024)
                if not more:
                    return None
                text += more
                end = text.find(b"]", start.end())
    except OSError:
        return None
    body = text[start.end() : end]
    names: list[str] = []
    pos = 0
    while pos < len(body):
        match = _NAME.match(body, pos)
        if match is None:
            return None  # anything but quoted names: not a literal this reader vouches for
        name = match.group(1) or match.group(2)
        if name:
            names.append(name.decode())
        pos = match.end()
    return tuple(names)


_Index = tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, ...]], list[str]]


def _read_index(init_file: str) -> _Index | None:
    """Where each name of the package comes from, replaying its ``__init__`` statement by
    statement, and the preamble statements it has; None when the ``__init__`` is not the
    generated kind."""
    directory = os.path.dirname(init_file)
    try:
        with open(init_file, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    index: dict[str, tuple[str, bool]] = {}
    exports: dict[str, tuple[str, ...]] = {}
    preamble: list[str] = []
    for raw in lines:
        line = raw.rstrip()  # an indented line is inside a block: not matched, so not indexed
        if line in _PREAMBLE:
            preamble.append(line)
            continue
        if not line or line.startswith("#"):
            continue
        star, submodule = _STAR.fullmatch(line), _SUBMODULE.fullmatch(line)
        name = (star or submodule).group(1) if (star or submodule) else None
        if (
            name is None
            or not os.path.isfile(os.path.join(directory, f"{name}.py"))
            or os.path.isdir(os.path.join(directory, name))
        ):
            return None  # another statement, or a subpackage: only the real __init__ knows
        index[name] = (name, False)  # importing a submodule binds it in its package
        if star:
            names = _exports(os.path.join(directory, f"{name}.py"))
            if names is None:
                return None
            exports[name] = names
            for exported in names:
                index[exported] = (name, True)
    if any(bound in index for bound, _ in _PREAMBLE.values()):
        return None
    return index, exports, preamble


class _ServicePackage(types.ModuleType):
    """A ``pulumi_gcp`` service package whose ``__init__`` has not run (see the module doc)."""

    def __getattr__(self, name: str) -> Any:
        pending = _PENDING.get(self.__name__)
        entry = pending.index.get(name) if pending is not None else None
        if pending is None or entry is None:
            return _run_init(self, name)
        submodule_name, exported = entry
        submodule = importlib.import_module(f"{self.__name__}.{submodule_name}")
        if not exported:
            value: Any = submodule
        else:
            if submodule_name not in pending.checked:
                if tuple(getattr(submodule, "__all__", ())) != pending.exports[submodule_name]:
                    return _run_init(self, name)
                pending.checked.add(submodule_name)
            value = getattr(submodule, name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing submodule ``x`` binds it as ``x`` in its package, but where ``x`` also
        # names what the submodule exports (``get_cluster`` in ``get_cluster``), the
        # ``__init__``'s star import binds that instead; leave it to be resolved on demand.
        pending = _PENDING.get(self.__name__)
        if (
            pending is not None
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
            and pending.index.get(name, (name, False))[1]
        ):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self) -> list[str]:
        _run_init(self, None)
        return list(types.ModuleType.__dir__(self))


def _run_init(module: types.ModuleType, name: str | None) -> Any:
    """Run the package's real ``__init__`` in ``module``; then read ``name`` from it, which
    fails as it would on the eagerly imported package."""
    pending = _PENDING.get(module.__name__)
    if pending is not None:
        with pending.lock:
            if _PENDING.get(module.__name__) is pending:
                module.__class__ = types.ModuleType
                try:
                    pending.loader.exec_module(module)
                finally:
                    _PENDING.pop(module.__name__, None)
    if name is None:
        return None
    return getattr(module, name)


class _ServiceLoader(importlib.abc.Loader):
    """Loads a service package as a :class:`_ServicePackage` when its ``__init__`` is the
    generated kind, else with the real loader."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        # The package is then what the real loader made: same loader, file and path.
        module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        read = _read_index(module.__spec__.origin or "")
        if read is None:
            self.loader.exec_module(module)
            return
        index, exports, preamble = read
        for statement in preamble:
            bound, target = _PREAMBLE[statement]
            module.__dict__[bound] = importlib.import_module(target)
        _PENDING[module.__name__] = _Pending(self.loader, index, exports)
        module.__class__ = _ServicePackage


class _ServiceFinder(importlib.abc.MetaPathFinder):
    """Finds ``pulumi_gcp.<service>`` packages, to be loaded by :class:`_ServiceLoader`."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        provider, dot, service = fullname.partition(".")
        if provider != _PROVIDER or not dot or "." in service or service.startswith("_"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if (
            spec is None
            or spec.submodule_search_locations is None
            or not isinstance(spec.loader, importlib.machinery.SourceFileLoader)
        ):
            return None  # not a source package: the ordinary finders load it
        spec.loader = _ServiceLoader(spec.loader)
        return spec


_FINDER = _ServiceFinder()


def install() -> None:
    """Load the service packages imported from now on lazily (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Service packages imported from now on load eagerly; those loaded lazily stay so."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def installed() -> bool:
    return _FINDER in sys.meta_path
