"""pulumi_gcp service packages loaded lazily (agentstage.lazy_gcp) behave as loaded eagerly.

Each case runs in two fresh processes, one with the lazy loader and one without it (a clean
module table each: this process may have imported pulumi_gcp either way already), and compares
what they print.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Runs first in every probe: the loader on or off (after the engine, which installs it).
_PRELUDE = """
import json, sys
sys.path.insert(0, {root!r})
import agentstage.engine
from agentstage import lazy_gcp
lazy_gcp.install() if {lazy!r} else lazy_gcp.uninstall()
"""


def _probe(script: str, *, lazy: bool, cwd: Path = ROOT) -> str:
    code = _PRELUDE.format(root=str(ROOT), lazy=lazy) + textwrap.dedent(script)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _both(script: str, **kwargs) -> tuple[str, str]:
    return _probe(script, lazy=True, **kwargs), _probe(script, lazy=False, **kwargs)


_PLANS = """
from agentstage.engine import run_plan
for project, stack, new_stack in {cases!r}:
    plan = run_plan(project, stack, new_stack=new_stack)
    print(json.dumps(plan.to_json(), sort_keys=True))
    print(json.dumps({{r.urn: [r.id, r.outputs] for r in plan.resources}}, sort_keys=True))
print(json.dumps(sorted(name for name in lazy_gcp._PENDING)))
"""


def test_plans_are_byte_identical_with_and_without_the_lazy_loader(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from bench.stackgen import MIXED, write_project
    finally:
        sys.path.remove(str(ROOT))
    mixed_dir, mixed = write_project(tmp_path / "mixed", 4, MIXED)
    cases = [
        (str(ROOT), "staging", False),
        (str(ROOT), "production", False),
        (str(mixed_dir), mixed, False),
        (str(mixed_dir), mixed, True),
    ]
    lazy, eager = _both(_PLANS.format(cases=cases))
    *lazy_plans, still_lazy = lazy.splitlines()
    *eager_plans, none_lazy = eager.splitlines()
    assert len(lazy_plans) == 2 * len(cases)
    for got, want in zip(lazy_plans, eager_plans, strict=True):
        assert got == want
    # The loader did its work: the services the platform uses never ran their __init__.
    assert {"pulumi_gcp.compute", "pulumi_gcp.container", "pulumi_gcp.cloudrunv2"} <= set(json.loads(still_lazy))
    assert json.loads(none_lazy) == []


def test_names_resolve_to_the_objects_the_package_init_binds():
    script = """
    import types
    import pulumi_gcp.compute as compute
    import pulumi_gcp.container as container
    names = [
        "BackendService", "BackendServiceArgs", "BackendServiceBackendArgs", "BackendServiceBackendArgsDict",
        "get_backend_service", "get_backend_service_output", "GetBackendServiceResult",
        "AwaitableGetBackendServiceResult", "outputs", "backend_service", "_inputs",
        "typing", "_utilities", "_builtins",
    ]
    def describe(value):
        if isinstance(value, types.ModuleType):
            return "module " + value.__name__
        return f"{value.__module__}.{value.__qualname__}"
    print(json.dumps({name: describe(getattr(compute, name)) for name in names}))
    # The class is the one its own module defines, not a copy.
    from pulumi_gcp.compute.backend_service import BackendService
    print(compute.BackendService is BackendService)
    # Importing a function's module binds the module in its package; the __init__'s star
    # import binds the function under the same name, which is what a package in use shows.
    container.Cluster
    import pulumi_gcp.container.get_cluster
    print(describe(container.get_cluster))
    print("pulumi_gcp.compute.autoscaler" in sys.modules)
    """
    lazy, eager = _both(script)
    assert lazy.splitlines()[:3] == eager.splitlines()[:3]
    assert lazy.splitlines()[2] == "pulumi_gcp.container.get_cluster.get_cluster"
    resolved = json.loads(lazy.splitlines()[0])
    assert resolved["get_backend_service"] == "pulumi_gcp.compute.get_backend_service.get_backend_service"
    assert resolved["BackendServiceBackendArgs"] == "pulumi_gcp.compute._inputs.BackendServiceBackendArgs"
    # Lazily, the compute modules nobody asked for were never imported.
    assert lazy.splitlines()[3] == "False"
    assert eager.splitlines()[3] == "True"


def test_star_import_dir_and_unknown_names_behave_as_with_the_eager_package():
    script = """
    import pulumi_gcp
    from pulumi_gcp import storage, iam
    namespace = {}
    exec("from pulumi_gcp.storage import *", namespace)
    print(json.dumps(sorted(namespace)))
    print(json.dumps(dir(iam)))
    try:
        pulumi_gcp.vertex.NoSuchResource
    except AttributeError as err:
        print(repr(err))
    try:
        exec("from pulumi_gcp.pubsub import NoSuchTopic", {})
    except ImportError as err:
        print(type(err).__name__, err.msg)
    """
    lazy, eager = _both(script)
    assert lazy == eager
    assert "Bucket" in json.loads(lazy.splitlines()[0])
    assert lazy.splitlines()[2] == "AttributeError(\"module 'pulumi_gcp.vertex' has no attribute 'NoSuchResource'\")"


def test_registered_resource_modules_still_construct_their_classes():
    """A resource reference coming back from the engine is deserialized through the module
    registry ``pulumi_gcp/__init__`` fills (``_utilities.register``), which reads the class
    from the service package by name."""
    script = """
    import pulumi
    import pulumi_gcp
    from google.protobuf import struct_pb2
    from pulumi.runtime import rpc

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return [args.name + "-id", args.inputs]

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False)
    ref = struct_pb2.Struct()
    ref.update({"urn": "urn:pulumi:s::p::gcp:container/cluster:Cluster::c", "id": "c"})
    resource = rpc.deserialize_resource(ref)
    print(type(resource) is pulumi_gcp.container.Cluster, type(resource).__module__)
    """
    lazy, eager = _both(script)
    assert lazy == eager == "True pulumi_gcp.container.cluster\n"


@pytest.mark.parametrize(
    "init, lazy",
    [
        ("import builtins as _builtins\nfrom .. import _utilities\nimport typing\nfrom .a import *\n", True),
        ("import typing\nfrom .a import *\nVALUE = 1\n", False),
        ("import typing\nif typing.TYPE_CHECKING:\n    from .a import *\n", False),
    ],
)
def test_a_package_init_that_is_not_the_generated_kind_is_not_indexed(tmp_path, init, lazy):
    from agentstage import lazy_gcp

    (tmp_path / "__init__.py").write_text(init)
    (tmp_path / "a.py").write_text("__all__ = ['A', \"get_a\"]\nA = 1\n")
    read = lazy_gcp._read_index(str(tmp_path / "__init__.py"))
    if lazy:
        assert read == (
            {"a": ("a", False), "A": ("a", True), "get_a": ("a", True)},
            {"a": ("A", "get_a")},
            ["import builtins as _builtins", "from .. import _utilities", "import typing"],
        )
    else:
        assert read is None


def test_an_all_that_is_not_a_literal_list_of_names_is_not_read(tmp_path):
    from agentstage import lazy_gcp

    (tmp_path / "m.py").write_text("__all__ = ['A', *OTHER]\n")
    assert lazy_gcp._exports(str(tmp_path / "m.py")) is None
    (tmp_path / "n.py").write_text("import x\n\n__all__ = [\n    'A',\n    'B',\n]\n")
    assert lazy_gcp._exports(str(tmp_path / "n.py")) == ("A", "B")


def test_a_submodule_whose_all_is_not_what_was_read_falls_back_to_the_real_init(tmp_path):
    """A module that extends ``__all__`` after the literal: the names it adds are found by the
    real ``__init__``, and the names of the literal too once its real ``__all__`` is seen."""
    import importlib.machinery
    import importlib.util

    from agentstage import lazy_gcp

    package = tmp_path / "fakesvc"
    package.mkdir()
    (package / "__init__.py").write_text("import typing\nfrom .a import *\nfrom .b import *\n")
    (package / "a.py").write_text("__all__ = ['A']\nA = object()\n")
    (package / "b.py").write_text("__all__ = ['B']\n__all__ += ['C']\nB = object()\nC = object()\n")

    def load(name):
        spec = importlib.util.spec_from_file_location(name, package / "__init__.py")
        spec.loader = lazy_gcp._ServiceLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    try:
        first = load("fakesvc_first")
        assert isinstance(first, lazy_gcp._ServicePackage)
        assert first.A is sys.modules["fakesvc_first.a"].A
        assert "fakesvc_first.b" not in sys.modules  # still lazy
        assert first.B is sys.modules["fakesvc_first.b"].B  # b's real __all__ differs: the real __init__ ran
        assert type(first) is types.ModuleType and "fakesvc_first" not in lazy_gcp._PENDING
        assert first.C is sys.modules["fakesvc_first.b"].C

        second = load("fakesvc_second")
        assert second.C is sys.modules["fakesvc_second.b"].C  # not in any literal: the real __init__ ran
        assert sorted(n for n in vars(second) if not n.startswith("__")) == ["A", "B", "C", "a", "b", "typing"]
    finally:
        for name in [n for n in sys.modules if n.startswith("fakesvc_")]:
            del sys.modules[name]
            lazy_gcp._PENDING.pop(name, None)
