"""The offline engine: run an unmodified Pulumi program under Pulumi's own mock runtime.

No Pulumi CLI, provider plugin or cloud credential is needed. The program is run with
``pulumi.runtime.set_mocks`` and a recording ``MockMonitor`` that keeps every
``RegisterResourceRequest`` (type, name, inputs, parent, dependencies, options). Stack config
is read from the stack file the way the CLI reads it: keys without a namespace belong to the
project, structured values reach the program as JSON, ``secure:`` values stay secret (the
offline engine cannot decrypt them and passes the placeholder ``[secret]``).

Provider-computed outputs (service account emails, service URLs, revision names...) are
filled in realistically by :mod:`agentstage.fixtures`, as a preview of a stack whose resources
already exist sees them. ``run_plan(..., new_stack=True)`` plans instead as a first ``pulumi
preview`` of a new stack sees it: every resource is being created, so the provider answers
with its inputs only and no id, and every computed output is unknown (``[unknown]`` in the
plan, the unknown sentinel in the wire Structs) wherever the program passed it on.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import importlib.machinery
import json
import os
import runpy
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstage import lazy_gcp
from agentstage.errors import EXIT_BAD_INPUT, BadInput, Failed

# A program's pulumi_gcp services load only the modules it uses (see agentstage.lazy_gcp):
# most of a small plan's time is otherwise spent importing ones it never reads.
lazy_gcp.install()

__all__ = [
    "EngineError",
    "ProgramError",
    "Project",
    "StackConfig",
    "Plan",
    "PlannedResource",
    "load_project",
    "load_stack_config",
    "run_plan",
    "SECRET",
    "UNKNOWN",
]

#: How a secret value is shown (and, offline, the value the program receives).
SECRET = "[secret]"
STACK_TYPE = "pulumi:pulumi:Stack"


class EngineError(BadInput):
    """The project or stack cannot be loaded (missing dir, missing stack file, bad YAML)."""


class ProgramError(Failed):
    """The program failed. ``config_error`` is set when it failed on invalid stack config."""

    def __init__(self, message: str, *, config_issues: list[str] | None = None) -> None:
        super().__init__(message, details=config_issues or ())
        self.config_issues = config_issues
        if config_issues:
            self.exit_code = EXIT_BAD_INPUT
        #: What the program had registered when it failed.
        self.resources: list[PlannedResource] = []


@dataclass(frozen=True)
class Project:
    dir: Path
    name: str
    main: Path
    stack_config_dir: Path
    config_defaults: dict[str, Any] = field(default_factory=dict)

    def stack_file(self, stack: str) -> Path:
        return self.stack_config_dir / f"Pulumi.{stack}.yaml"


@dataclass
class StackConfig:
    path: Path
    values: dict[str, str]
    secret_keys: list[str]


def _read_yaml(path: Path, what: str) -> Any:
    """A project or stack file, read strictly (:mod:`agentstage.inputs`)."""
    from agentstage.inputs import load_yaml

    try:
        return load_yaml(path, what)
    except BadInput as err:
        raise EngineError(err.message, file=err.file, key=err.key) from None


def load_project(project_dir: str | os.PathLike[str]) -> Project:
    root = Path(project_dir).resolve()
    if not root.is_dir():
        raise EngineError(f"project directory {project_dir} does not exist")
    manifest = root / "Pulumi.yaml"
    if not manifest.is_file():
        raise EngineError(f"{root} is not a Pulumi project: no Pulumi.yaml (use -C/--project DIR)")
    data = _read_yaml(manifest, "project file")
    if not isinstance(data, dict):
        raise EngineError(
            f"{manifest}: expected a mapping with name:, runtime: and main: keys, not {_kind(data)}", file=str(manifest)
        )
    name = data.get("name")
    if not name or not isinstance(name, str):
        raise EngineError(
            f"{manifest}: name: is {'missing' if not name else _kind(name)}; give the project's name as a string",
            file=str(manifest),
            key="name",
        )
    for key in ("main", "stackConfigDir"):
        if key in data and not isinstance(data[key], str):
            raise EngineError(
                f"{manifest}: {key}: is {_kind(data[key])}; give a path relative to the project",
                file=str(manifest),
                key=key,
            )
    main = root / str(data.get("main", ""))
    if main.is_dir():
        main = main / "__main__.py"
    if not main.is_file():
        raise EngineError(f"{main}: the program's entry point does not exist")
    config_dir = root / str(data.get("stackConfigDir", "."))
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise EngineError(
            f"{manifest}: config: is {_kind(config)}; give a mapping of config keys to their "
            "declarations (type:, default:...) or values",
            file=str(manifest),
            key="config",
        )
    defaults: dict[str, Any] = {}
    for key, spec in config.items():
        value = spec.get("default", spec.get("value")) if isinstance(spec, dict) else spec
        if value is not None:
            defaults[key if ":" in key else f"{name}:{key}"] = value
    return Project(root, name, main, config_dir, defaults)


def _kind(value: Any) -> str:
    """What a YAML value is, for messages ("a list", "the string 'x'")."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{json.dumps(value)}"


def _encode(value: Any) -> str:
    """A config value as the CLI hands it to a program: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _strip_secure(value: Any) -> tuple[Any, bool]:
    """Replace ``{secure: ...}`` anywhere in ``value`` by the placeholder; report if any."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET, True
        found = False
        out = {}
        for k, v in value.items():
            out[k], hit = _strip_secure(v)
            found |= hit
        return out, found
    if isinstance(value, list):
        items = [_strip_secure(v) for v in value]
        return [v for v, _ in items], any(h for _, h in items)
    return value, False


def load_stack_config(project: Project, stack: str, config_file: str | os.PathLike[str] | None = None) -> StackConfig:
    """Read ``Pulumi.<stack>.yaml`` (or ``config_file``, which replaces it, as with
    ``pulumi --config-file``) into the key -> value map the program receives."""
    path = Path(config_file) if config_file else project.stack_file(stack)
    if not config_file and not path.exists():
        available = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in project.stack_config_dir.glob("Pulumi.*.yaml")
        )
        hint = f"; stacks here: {', '.join(available)}" if available else ""
        raise EngineError(f"stack {stack!r} has no config file {path}{hint}", file=str(path))
    try:
        content: bytes | None = path.read_bytes()
    except OSError:
        content = None  # _read_yaml says why
    cache_key = (str(path), bool(config_file), project.name, repr(project.config_defaults), content)
    if content is not None and _last_stack_config and _last_stack_config[0] == cache_key:
        done = _last_stack_config[1]
        return StackConfig(done.path, dict(done.values), list(done.secret_keys))
    data = _read_yaml(path, "config file" if config_file else "stack config")
    if data is None:
        raise EngineError(f"{path} is empty; a stack config is a mapping with a config: key", file=str(path))
    if not isinstance(data, dict):
        raise EngineError(f"{path}: expected a mapping with a config: key, not {_kind(data)}", file=str(path))
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise EngineError(
            f"{path}: config: is {_kind(config)}; it must be a mapping of config keys to values "
            "(gcp:project: ..., <project>:agents: ...)",
            file=str(path),
            key="config",
        )
    raw = dict(project.config_defaults)
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    written: dict[str, str] = {}
    for key in config:
        full = key if ":" in key else f"{project.name}:{key}"
        if full in written:
            raise EngineError(
                f"{path}: {key} and {written[full]} are the same key ({full}: a key without a "
                "namespace is in the project's); keep one",
                file=str(path),
                key=full,
            )
        written[full] = key
        raw.pop(full, None)
    raw.update(config)
    for key, value in raw.items():
        full = key if ":" in key else f"{project.name}:{key}"
        value, secret = _strip_secure(value)
        values[full] = _encode(value)
        if secret:
            secret_keys.append(full)
    if content is not None:
        _last_stack_config[:] = [cache_key, StackConfig(path, dict(values), list(secret_keys))]
    return StackConfig(path, values, secret_keys)


#: The last stack config read: (what it was read from, byte for byte; the result). A command
#: reads its stack's config more than once (``check`` for the pack and the program, then to
#: warn about its size); parsing a 100-agent stack file is about a second, and the same bytes
#: give the same result. Only the last one is kept, so memory stays flat.
_last_stack_config: list[Any] = []


# --- the plan --------------------------------------------------------------------------------


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    provider: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: The inputs and outputs as the wire carried them (``google.protobuf.Struct``), for
    #: consumers that pass them on over gRPC (the policy runner); not part of the JSON plan.
    wire_inputs: Any = field(default=None, repr=False, compare=False)
    wire_outputs: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": self.inputs,
            "dependencies": self.dependencies,
            "property_dependencies": self.property_dependencies,
            "provider": self.provider,
            "options": self.options,
        }


@dataclass
class Plan:
    project: str
    stack: str
    config_path: str
    resources: list[PlannedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    #: Planned as a first preview of a new stack: computed outputs are unknown.
    new_stack: bool = False

    def by_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def find(self, type_: str, name: str) -> PlannedResource:
        for r in self.resources:
            if r.type == type_ and r.name == name:
                return r
        raise KeyError(f"{type_} {name}")

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "config": self.config_path,
            "new_stack": self.new_stack,
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.outputs,
        }


@functools.cache
def _wire_signatures() -> tuple[str, str, str, str, str]:
    """The SDK's own wire markers (signature key; secret, resource-reference and output
    signatures; the unknown sentinel), read from the installed ``pulumi.runtime.rpc`` rather
    than copied, so an SDK that changes them changes them here too; the contract test
    (tests/test_sdk_contract.py) fails loudly when it does. Imported on first use: loading
    the SDK costs about 0.3 s, which commands that never plan should not pay."""
    from pulumi.runtime import rpc

    return (
        rpc._special_sig_key,
        rpc._special_secret_sig,
        rpc._special_resource_sig,
        rpc._special_output_value_sig,
        rpc.UNKNOWN,
    )


#: How a value that cannot be known during a preview is shown (a computed output of a
#: resource being created, or anything the program derived from one).
UNKNOWN = "[unknown]"


def _plain(value: Any) -> Any:
    """Wire values (a ``Struct`` as a dict) -> JSON-able values. Unlike the SDK's
    deserializer, a secret stays where it is (``[secret]`` at its own leaf) instead of
    making its whole parent object secret."""
    return _from_wire(value, _wire_signatures())


def _from_wire(value: Any, sigs: tuple[str, str, str, str, str]) -> Any:
    # The markers travel as an argument (not a closure, which would make a reference cycle
    # per call while the engine has the cycle collector paused).
    sig_key, secret_sig, resource_sig, output_sig, wire_unknown = sigs
    if isinstance(value, dict):
        sig = value.get(sig_key)
        if sig == secret_sig:
            return SECRET
        if sig == resource_sig:
            return value.get("urn")
        if sig == output_sig:
            if value.get("secret"):
                return SECRET
            return _from_wire(value["value"], sigs) if "value" in value else UNKNOWN
        return {k: _from_wire(v, sigs) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_wire(v, sigs) for v in value]
    if value == wire_unknown:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire has only doubles; show 8080, not 8080.0
    return value


def to_wire(value: Any) -> Any:
    """The inverse of the plan's form, for handing plan values back to Pulumi over gRPC:
    ``[secret]`` becomes a secret, ``[unknown]`` an unknown."""
    return _to_wire(value, _wire_signatures())


def _to_wire(value: Any, sigs: tuple[str, str, str, str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _to_wire(v, sigs) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v, sigs) for v in value]
    if value == SECRET:
        return {sigs[0]: sigs[1], "value": SECRET}
    if value == UNKNOWN:
        return sigs[4]
    return value


def _tree_order(records: list[PlannedResource]) -> list[PlannedResource]:
    """Parents before children, siblings by URN: the same order on every run (the mock
    monitor registers from several threads, so arrival order varies)."""
    children: dict[str | None, list[PlannedResource]] = {}
    urns = {r.urn for r in records}
    for r in records:
        children.setdefault(r.parent if r.parent in urns else None, []).append(r)
    out: list[PlannedResource] = []
    stack = sorted(children.get(None, []), key=lambda r: r.urn, reverse=True)
    while stack:
        r = stack.pop()
        out.append(r)
        stack.extend(sorted(children.get(r.urn, []), key=lambda c: c.urn, reverse=True))
    return out


def _options(request: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if request.protect:
        opts["protect"] = True
    if request.ignoreChanges:
        opts["ignore_changes"] = list(request.ignoreChanges)
    if request.replaceOnChanges:
        opts["replace_on_changes"] = list(request.replaceOnChanges)
    if request.deleteBeforeReplace:
        opts["delete_before_replace"] = True
    if request.additionalSecretOutputs:
        opts["additional_secret_outputs"] = list(request.additionalSecretOutputs)
    if request.retainOnDelete:
        opts["retain_on_delete"] = True
    if request.deletedWith:
        opts["deleted_with"] = request.deletedWith
    if request.version:
        opts["version"] = request.version
    if request.importId:
        opts["import"] = request.importId
    return opts


def _build_monitor(mocks: Any, on_resource: Callable[[PlannedResource], None] | None = None) -> Any:
    from google.protobuf import json_format, struct_pb2
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime.proto import resource_pb2
    from pulumi.runtime.settings import get_project, get_stack

    class RecordingMonitor(pmocks.MockMonitor):
        """A MockMonitor that keeps each full RegisterResourceRequest."""

        def __init__(self, m: Any) -> None:
            super().__init__(m)
            self.records: list[PlannedResource] = []

        def make_urn(self, parent: str, type_: str, name: str) -> str:
            # As the engine forms URNs: the parent's whole qualified type chain, joined by
            # "$", precedes the type; the root stack's type is not part of it.
            if parent:
                qualified = parent.split("::")[2]
                if qualified != STACK_TYPE:
                    type_ = f"{qualified}${type_}"
            return f"urn:pulumi:{get_stack()}::{get_project()}::{type_}::{name}"

        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
            # Inputs stay in their wire form (secrets, unknowns and resource references as
            # the SDK encoded them) from request to response: the mocks read and extend that
            # form, and it goes back as a Struct without a round trip through the SDK's
            # async (de)serializers, which would cost more than the rest of the engine.
            urn = self.make_urn(request.parent, request.type, request.name)
            wire = json_format.MessageToDict(request.object)
            record = PlannedResource(
                urn=urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=bool(request.custom),
                inputs=_plain(wire),
                dependencies=sorted(request.dependencies),
                property_dependencies={k: sorted(v.urns) for k, v in sorted(request.propertyDependencies.items())},
                provider=request.provider or None,
                options=_options(request),
                wire_inputs=request.object,
            )
            self.records.append(record)
            if request.type == STACK_TYPE:
                if on_resource is not None:
                    on_resource(record)
                return resource_pb2.RegisterResourceResponse(urn=urn)
            args = pmocks.MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=wire,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
            )
            id_, state = self.mocks.new_resource(args)
            record.id = id_ or None  # "": the unknown id of a resource being created
            record.outputs = _plain(state)
            obj = struct_pb2.Struct()
            obj.update(state)
            record.wire_outputs = obj
            self.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, id_, state)
            if on_resource is not None:
                on_resource(record)
            return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)

    return RecordingMonitor(mocks)


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each submitted call at once, on the calling thread.

    The SDK sends every monitor RPC through the event loop's default executor, built for a
    real gRPC monitor in another process. The recording monitor answers in microseconds
    from memory, so handing each call to a worker thread and back costs more than the call
    (thread switches, the GIL, the loop's self-pipe). Set as the loop's default executor
    for the run only."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(err)
        return future


#: The top-level package of this engine: never one of a project's local modules, even when
#: the project is the engine's own repository.
_ENGINE_PACKAGE = __name__.partition(".")[0]


def _real(path: str) -> str:
    return os.path.realpath(path or os.getcwd())


def _local_names(root: Path) -> dict[str, str]:
    """The top-level modules the project directory provides (``<name>.py`` or a package
    ``<name>/__init__.py``; not the program's ``__main__``): name -> its file."""
    names: dict[str, str] = {}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return names
    for entry in entries:
        if entry.is_file() and entry.name.endswith(".py"):
            name, origin = entry.name[:-3], entry.path
        elif entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
            name, origin = entry.name, os.path.join(entry.path, "__init__.py")
        else:
            continue
        if name.isidentifier() and name != "__main__":
            names[name] = origin
    return names


def _found_elsewhere(name: str, root: str) -> str | None:
    """The file the interpreter would import top-level module ``name`` from without the
    project directory on ``sys.path`` (an installed package, or an editable install of the
    project's own repository, which a meta path finder resolves), else None."""
    path = [p for p in sys.path if isinstance(p, str) and _real(p) != root]
    for finder in sys.meta_path:
        try:
            if finder is importlib.machinery.PathFinder:
                spec = finder.find_spec(name, path)
            else:
                find = getattr(finder, "find_spec", None)
                spec = find(name, None) if find is not None else None
        except Exception:  # noqa: BLE001 - a finder that cannot answer does not provide it
            continue
        if spec is not None:
            return _real(spec.origin) if spec.origin and spec.has_location else f"<{spec.origin}>"
    return None


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where the standard library and installed packages live."""
    paths = sysconfig.get_paths()
    return tuple({_real(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths})


def _is_library(name: str, module: Any) -> bool:
    """``module`` is built in or frozen, or comes from the standard library or
    site-packages: what the language host and the SDK have loaded before a program runs."""
    if name in sys.builtin_module_names or getattr(getattr(module, "__spec__", None), "origin", None) == "frozen":
        return True
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and _real(file).startswith(_library_dirs())


class _LocalModules:
    """The project's own modules. A top-level module is the project's when it is a file or
    package of the project directory that the interpreter would not import from that same
    file without the directory on ``sys.path`` (so ``components`` of an editable install
    stays shared); a module the program imported from under the project directory some
    other way (through a path it added) is the project's too, unless it is shared."""

    def __init__(self, root: Path) -> None:
        self.root = _real(str(root))
        self.prefix = self.root + os.sep
        self._shared: dict[str, bool] = {}
        self.names = {name for name, origin in _local_names(root).items() if not self.shared(name, _real(origin))}

    def shared(self, top: str, origin: str) -> bool:
        if top == _ENGINE_PACKAGE:
            return True
        if top not in self._shared:
            self._shared[top] = _found_elsewhere(top, self.root) == origin
        return self._shared[top]

    def owns(self, name: str, module: Any) -> bool:
        top = name.partition(".")[0]
        if top in self.names:
            return True
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.startswith(self.prefix):
            return False
        top_file = getattr(sys.modules.get(top), "__file__", None)
        return not self.shared(top, _real(top_file if isinstance(top_file, str) else file))


@contextmanager
def _program_scope(root: Path) -> Iterator[None]:
    """Run the program as the language host runs it, isolated from any other plan in this
    process: the program's directory first on ``sys.path`` and as the working directory, its
    local modules imported afresh, and afterwards ``sys.path``, the working directory and the
    ``sys.modules`` entries of every project-local name as they were before.

    A cached module that a local module of this project shadows (a ``helper`` the host
    imported from elsewhere; see :class:`_LocalModules`) is set aside for the run, unless it
    is part of the standard library or an installed package, which the language host has
    loaded before the program too. The program so imports its own modules, and a module that
    reads ``pulumi.Config()`` at import time reads this plan's config. Every project module
    the run imported is dropped at the end, and what was set aside is put back. Shared
    libraries (``pulumi``, ``pulumi_gcp``, ``components``) stay cached between plans.

    ``sys.path`` is rebound to a new list, never changed in place: an import running on
    another thread meanwhile (the policy runner's) walks the list it started with, which an
    in-place insert or restore would shift under it, skipping site-packages."""
    local = _LocalModules(root)
    saved_path, saved_cwd = sys.path, os.getcwd()
    set_aside = {
        name: module
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in local.names and not _is_library(name, module)
    }
    for name in set_aside:
        del sys.modules[name]
    before = dict(sys.modules)
    sys.path = [str(root), *saved_path]
    os.chdir(root)
    try:
        yield
    finally:
        sys.path = saved_path
        os.chdir(saved_cwd)
        sys.path_importer_cache.pop(str(root), None)
        for name, module in list(sys.modules.items()):
            if before.get(name) is not module and local.owns(name, module):
                del sys.modules[name]
        sys.modules.update(set_aside)


def _no_stack_trace() -> Any:
    from pulumi.runtime.proto import source_pb2

    return source_pb2.StackTrace()


@contextmanager
def _without_stack_traces() -> Iterator[None]:
    """Patches the SDK's internals (a last resort): ``pulumi.runtime.resource._get_stack_trace``
    answers an empty trace while the program runs, and the original is put back afterwards.

    The SDK walks and formats the whole Python stack for every resource it registers (about a
    seventh of a plan) to fill ``stackTrace`` and ``sourcePosition`` in the request, which the
    Pulumi engine shows in its diagnostics. The recording monitor never reads either, so the
    plan does not change. tests/test_sdk_contract.py fails, naming what changed, when an SDK
    upgrade renames the function or stops calling it by its module-level name."""
    from pulumi.runtime import resource as presource

    original = presource._get_stack_trace  # noqa: SLF001 - see the docstring
    presource._get_stack_trace = _no_stack_trace  # noqa: SLF001
    try:
        yield
    finally:
        presource._get_stack_trace = original  # noqa: SLF001


@contextmanager
def _own_config(values: dict[str, str], secret_keys: list[str]) -> Iterator[None]:
    """The plan's stack config as the runtime's config while the program runs; the config
    that was set before afterwards, so no plan's config outlives it."""
    from pulumi.runtime import config as pconfig

    saved = pconfig.CONFIG.get(), pconfig._SECRET_KEYS.get()  # noqa: SLF001 - the SDK keeps them there
    pconfig.set_all_config(dict(values), list(secret_keys))
    try:
        yield
    finally:
        pconfig.CONFIG.set(saved[0])
        pconfig._SECRET_KEYS.set(saved[1])  # noqa: SLF001


def run_plan(
    project_dir: str | os.PathLike[str],
    stack: str,
    config_file: str | os.PathLike[str] | None = None,
    *,
    on_resource: Callable[[PlannedResource], None] | None = None,
    stack_config: StackConfig | None = None,
    new_stack: bool = False,
) -> Plan:
    """Run the project's program for ``stack`` under the mock runtime and return its plan.

    ``on_resource`` is called with each resource as it is registered (with its computed
    outputs), so a consumer can work while the program still runs. ``stack_config``: the
    stack config already read with :func:`load_stack_config` (it is read here otherwise).
    ``new_stack``: plan as a first preview of a new stack, where every resource is being
    created and its provider-computed outputs are unknown (invokes still answer).

    Raises :class:`EngineError` when the project or stack cannot be loaded and
    :class:`ProgramError` when the program fails (``config_issues`` set on bad config)."""
    # The SDK makes several hundred short-lived objects per resource (outputs, futures,
    # tasks); reference counting frees them, but the cycle collector's passes over the
    # growing heap would cost as much as the whole run again. Pause it for the run; it
    # resumes (and collects what cycles there are) afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_plan(project_dir, stack, config_file, on_resource, stack_config, new_stack)
    finally:
        if collecting:
            gc.enable()


def _run_plan(
    project_dir: str | os.PathLike[str],
    stack: str,
    config_file: str | os.PathLike[str] | None,
    on_resource: Callable[[PlannedResource], None] | None,
    stack_config: StackConfig | None,
    new_stack: bool,
) -> Plan:
    import pulumi
    from pulumi.runtime import settings as psettings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

    from agentstage.fixtures import FixtureMocks, NewStackMocks

    started = time.perf_counter()
    project = load_project(project_dir)
    config = stack_config or load_stack_config(project, stack, config_file)

    mocks = (NewStackMocks if new_stack else FixtureMocks)(config.values)
    monitor = _build_monitor(mocks, on_resource)
    psettings.set_root_resource(None)  # type: ignore[arg-type]

    failure: BaseException | None = None
    outputs: dict[str, Any] = {}
    loop = _ensure_event_loop()
    saved_executor = getattr(loop, "_default_executor", None)
    loop.set_default_executor(_InlineExecutor())
    with _own_config(config.values, config.secret_keys), _program_scope(project.dir), _without_stack_traces():
        pulumi.runtime.set_mocks(mocks, project=project.name, stack=stack, preview=True, monitor=monitor)
        try:
            _sync_await(run_pulumi_func(lambda: runpy.run_path(str(project.main), run_name="__main__")))
            root = psettings.get_root_resource()
            exported = getattr(root, "outputs", None) or {}
            if exported:
                outputs = _exported(exported)
        except BaseException as err:  # noqa: BLE001 - reported below, with what the program said
            failure = err
        finally:
            loop._default_executor = saved_executor  # type: ignore[attr-defined]
    if failure is not None:
        _raise_program_error(failure, monitor.records, stack)
    return Plan(
        project=project.name,
        stack=stack,
        config_path=str(config.path),
        resources=_tree_order(monitor.records),
        outputs=outputs,
        elapsed_s=time.perf_counter() - started,
        new_stack=new_stack,
    )


def _exported(exported: dict[str, Any]) -> dict[str, Any]:
    """The stack outputs in the plan's form, each serialized as the SDK sends it to the
    engine: a value that is unknown during this preview is ``[unknown]`` where it stands (not
    the whole map), a secret is ``[secret]``, an output that resolved to None stays None."""
    from pulumi.runtime import rpc
    from pulumi.runtime.sync_await import _sync_await

    async def serialize() -> dict[str, Any]:
        return {key: await rpc.serialize_property(value, [], key) for key, value in exported.items()}

    return _plain(_sync_await(serialize()))


def _raise_program_error(err: BaseException, registered: list[PlannedResource], stack: str) -> None:
    error = _program_error(err)
    if error.config_issues:
        error.message = f"invalid stack config for stack {stack!r}:"
    error.resources = registered
    raise error from (None if error.config_issues else err)


def _program_error(err: BaseException) -> ProgramError:
    from agentstage.config import ConfigError

    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConfigError):
            return ProgramError("invalid stack config:", config_issues=current.issues)
        current = current.__cause__ or current.__context__
    if isinstance(err, KeyboardInterrupt):
        raise err
    if isinstance(err, SystemExit):
        return ProgramError(
            f"the program exited with sys.exit({err.code!r}) before it finished; nothing was planned after that point"
        )
    return ProgramError(f"the program failed: {type(err).__name__}: {err}")
