"""What the offline engine and the policy runner rely on in the Pulumi SDKs.

The engine runs programs under the SDK's mock runtime with its own recording monitor, reads
the SDK's wire form (signatures, the unknown sentinel) and hands plan values back to an
unmodified CrossGuard pack, whose SDK (pulumi-policy) decodes them with its own copies of
those markers. None of that is a documented API of the SDK, so an upgrade could change it
without notice; each test here names what changed, so a failed upgrade says what to adapt
instead of failing somewhere in a plan.

Tested with pulumi 3.272.0 and pulumi-policy 1.21.0 (see ``TESTED``).
"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import pytest
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

from agentstage import engine

#: The SDK versions these tests last passed with; printed in every failure.
TESTED = {"pulumi": "3.272.0", "pulumi-policy": "1.21.0"}
INSTALLED = {name: version(name) for name in TESTED}
UPGRADE = f"(installed {INSTALLED}, last passed with {TESTED})"

#: The wire markers of the Pulumi resource protocol, as the engine (Go) defines them: the
#: signature key and the signatures in pulumi/sdk/go/common/resource/sig/sig.go
#: (``sig.Key``, ``sig.Secret``, ``sig.ResourceReference``, ``sig.OutputValue``,
#: ``sig.AssetSig``, ``sig.ArchiveSig``) and the unknown sentinel in
#: pulumi/sdk/go/common/resource/plugin/rpc.go (``UnknownStringValue``). They are part of
#: the protocol between the CLI, language hosts and analyzers, so they should never change;
#: the Python SDK keeps copies in ``pulumi.runtime.rpc``.
PROTOCOL = {
    "_special_sig_key": "4dabf18193072939515e22adb298388d",
    "_special_secret_sig": "1b47061264138c4ac30d75fd1eb44270",
    "_special_resource_sig": "5cf8f73096256a8f31e491e813e4eb8e",
    "_special_output_value_sig": "d0e6a833031e9bbcd3f4e8bde6ca49a4",
    "_special_asset_sig": "c44067f5952c0a294b673a41bacd8c17",
    "_special_archive_sig": "0def7320c3a5731c473e5ecbe6d01bc7",
    "UNKNOWN": "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
}


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_the_sdk_keeps_the_protocol_markers(name):
    assert hasattr(rpc, name), f"pulumi.runtime.rpc.{name} is gone {UPGRADE}; the engine reads it"
    assert getattr(rpc, name) == PROTOCOL[name], (
        f"pulumi.runtime.rpc.{name} changed from {PROTOCOL[name]!r} to {getattr(rpc, name)!r} {UPGRADE}"
    )


def test_the_engine_uses_the_sdk_markers_not_copies():
    assert engine._wire_signatures() == (
        rpc._special_sig_key,
        rpc._special_secret_sig,
        rpc._special_resource_sig,
        rpc._special_output_value_sig,
        rpc.UNKNOWN,
    )


def test_the_policy_sdk_decodes_with_the_same_markers():
    """The runner sends the plan's secrets and unknowns in the pulumi SDK's form; the pack's
    SDK recognises them by its own copies, which must agree."""
    from pulumi_policy import deserialize, proxy

    assert deserialize.SPECIAL_SECRET_SIG == rpc._special_secret_sig, (
        f"pulumi_policy.deserialize.SPECIAL_SECRET_SIG no longer matches pulumi's secret signature {UPGRADE}"
    )
    assert deserialize.SPECIAL_SIG_KEY == rpc._special_sig_key, (
        f"pulumi_policy.deserialize.SPECIAL_SIG_KEY no longer matches pulumi's signature key {UPGRADE}"
    )
    assert proxy.UNKNOWN_STRING_VALUE == rpc.UNKNOWN, (
        f"pulumi_policy.proxy.UNKNOWN_STRING_VALUE no longer matches pulumi's unknown sentinel {UPGRADE}"
    )


def _future(value):
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _output(value, *, known=True, secret=False):
    """An Output as a resource's computed output reaches the serializer."""

    async def make():
        from pulumi import Output

        out = Output(set(), _future(value), _future(known), _future(secret))
        return await rpc.serialize_property(out, [], "key")

    return make


def test_an_unknown_serializes_as_the_sentinel_and_the_plan_shows_it():
    wire = _sync_await(_output(None, known=False)())
    assert wire == PROTOCOL["UNKNOWN"], f"an unknown Output now serializes as {wire!r} {UPGRADE}"
    assert engine._plain(wire) == engine.UNKNOWN
    assert engine.to_wire(engine.UNKNOWN) == wire


class _Echo(pmocks.Mocks):
    def new_resource(self, args):
        return "", args.inputs

    def call(self, args):
        return {}


def test_a_secret_serializes_as_a_signed_map_and_the_plan_hides_it():
    import pulumi

    # The SDK signs a secret only for a monitor that supports secrets, as the mock runtime
    # the engine installs does (a plan resets the runtime's settings when it starts).
    pulumi.runtime.set_mocks(_Echo(), project="contract", stack="test", preview=True)
    wire = _sync_await(_output("hunter2", secret=True)())
    assert wire == {PROTOCOL["_special_sig_key"]: PROTOCOL["_special_secret_sig"], "value": "hunter2"}, (
        f"a secret Output now serializes as {wire!r} {UPGRADE}"
    )
    assert engine._plain({"env": wire, "port": 8080.0}) == {"env": engine.SECRET, "port": 8080}
    assert engine.to_wire(engine.SECRET) == {
        PROTOCOL["_special_sig_key"]: PROTOCOL["_special_secret_sig"],
        "value": "[secret]",
    }


def test_a_nested_unknown_stays_at_its_own_leaf():
    """The SDK serializes a list with one unknown element element by element; the engine's
    plan shows ``[unknown]`` there only, not for the whole list."""

    async def make():
        from pulumi import Output

        unknown = Output(set(), _future(None), _future(False))
        return await rpc.serialize_property(["a", unknown], [], "key")

    wire = _sync_await(make())
    assert wire == ["a", PROTOCOL["UNKNOWN"]], f"a list with an unknown element now serializes as {wire!r} {UPGRADE}"
    assert engine._plain(wire) == ["a", engine.UNKNOWN]


def test_mock_resource_args_has_the_fields_the_engine_sets_and_fixtures_read():
    params = inspect.signature(pmocks.MockResourceArgs).parameters
    for name in ("typ", "name", "inputs", "provider", "resource_id", "custom"):
        assert name in params, f"MockResourceArgs no longer takes {name}= {UPGRADE}; the engine passes it"
    args = pmocks.MockResourceArgs(
        typ="gcp:storage/bucket:Bucket", name="b", inputs={"x": 1}, provider="p", resource_id="i", custom=True
    )
    assert (args.typ, args.name, args.inputs, args.provider, args.resource_id, args.custom) == (
        "gcp:storage/bucket:Bucket",
        "b",
        {"x": 1},
        "p",
        "i",
        True,
    ), f"MockResourceArgs no longer keeps its arguments as attributes of the same names {UPGRADE}"


def test_mocks_and_mock_monitor_keep_the_interface_the_recording_monitor_extends():
    assert {"new_resource", "call"} <= set(pmocks.Mocks.__abstractmethods__), (
        f"pulumi.runtime.Mocks changed its abstract methods to {sorted(pmocks.Mocks.__abstractmethods__)} {UPGRADE}"
    )
    assert list(inspect.signature(pmocks.MockMonitor.make_urn).parameters) == ["self", "parent", "type_", "name"], (
        f"MockMonitor.make_urn changed its signature {UPGRADE}; the recording monitor overrides it"
    )
    assert callable(getattr(pmocks.MockMonitor, "RegisterResource", None)), (
        f"MockMonitor.RegisterResource is gone {UPGRADE}; the recording monitor overrides it"
    )
    assert pmocks.MockMonitor.ResourceRegistration._fields == ("urn", "id", "state"), (
        f"MockMonitor.ResourceRegistration fields are now {pmocks.MockMonitor.ResourceRegistration._fields} {UPGRADE}"
    )

    monitor = pmocks.MockMonitor(_Echo())
    assert isinstance(monitor.mocks, _Echo) and monitor.resources == {}, (
        f"MockMonitor no longer keeps .mocks and .resources {UPGRADE}"
    )
    assert "monitor" in inspect.signature(pmocks.set_mocks).parameters, (
        f"pulumi.runtime.set_mocks no longer takes monitor= {UPGRADE}; the engine installs its own"
    )


def test_the_runtime_internals_the_engine_drives_are_there():
    from pulumi.runtime import config, settings, stack, sync_await

    for module, name in [
        (stack, "run_pulumi_func"),
        (sync_await, "_sync_await"),
        (sync_await, "_ensure_event_loop"),
        (config, "set_all_config"),
        (config, "CONFIG"),
        (config, "_SECRET_KEYS"),
        (settings, "set_root_resource"),
        (settings, "get_root_resource"),
    ]:
        assert hasattr(module, name), f"{module.__name__}.{name} is gone {UPGRADE}; agentstage/engine.py uses it"


def test_the_sdk_takes_each_resources_stack_trace_from_the_function_the_engine_replaces():
    """The engine replaces ``pulumi.runtime.resource._get_stack_trace`` for a run (see
    ``engine._without_stack_traces``): the SDK must look it up by that module-level name when
    it registers or reads a resource, and an empty trace must mean "no source position"."""
    from pulumi.runtime import resource as presource
    from pulumi.runtime.proto import source_pb2

    assert hasattr(presource, "_get_stack_trace"), f"pulumi.runtime.resource._get_stack_trace is gone {UPGRADE}"
    for caller in (presource.register_resource, presource.read_resource):
        assert "_get_stack_trace" in caller.__code__.co_names, (
            f"pulumi.runtime.resource.{caller.__name__} no longer calls _get_stack_trace {UPGRADE}; "
            "the engine's replacement would not take effect"
        )
    assert isinstance(presource._get_stack_trace(), source_pb2.StackTrace), (
        f"pulumi.runtime.resource._get_stack_trace no longer returns a StackTrace {UPGRADE}"
    )
    assert presource._get_source_position(engine._no_stack_trace()) is None, (
        f"pulumi.runtime.resource._get_source_position of an empty trace is no longer None {UPGRADE}"
    )


def test_a_plan_puts_the_sdks_stack_trace_function_back(tmp_path):
    from pulumi.runtime import resource as presource

    original = presource._get_stack_trace
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(
        "import pulumi\nfrom pulumi.runtime import resource\n"
        "pulumi.export('patched', resource._get_stack_trace.__name__)\n"
    )
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    plan = engine.run_plan(tmp_path, "dev")
    assert plan.outputs == {"patched": "_no_stack_trace"}
    assert presource._get_stack_trace is original


#: The pulumi_gcp services the components use; each must load lazily to the same objects.
GCP_SERVICES = (
    "billing cloudfunctionsv2 cloudrunv2 compute container iam logging modelarmor monitoring organizations "
    "parametermanager projects pubsub secretmanager serviceaccount storage vertex"
).split()


def test_the_lazy_index_of_each_gcp_service_binds_what_its_init_binds():
    """agentstage.lazy_gcp reads which submodule binds each name of a pulumi_gcp service from
    the generated ``__init__`` and the ``__all__`` literals of its modules. Checked against the
    eagerly imported packages, name by name, in a fresh process without the lazy loader."""
    import json
    import subprocess
    import sys

    script = f"""
import importlib, json, sys
import agentstage.engine
from agentstage import lazy_gcp
lazy_gcp.uninstall()
problems = {{}}
for service in {GCP_SERVICES!r}:
    package = importlib.import_module("pulumi_gcp." + service)
    package._utilities  # the SDK's own lazy module runs the __init__ on first use
    read = lazy_gcp._read_index(package.__file__)
    if read is None:
        problems[service] = "its __init__ is no longer the generated kind"
        continue
    index, _, _ = read
    preamble = {{bound for bound, _ in lazy_gcp._PREAMBLE.values()}}
    names = {{n for n in vars(package) if not n.startswith("__")}} - preamble
    if names != set(index):
        problems[service] = f"names differ: {{sorted(names ^ set(index))[:5]}}"
        continue
    for name, (submodule, exported) in index.items():
        module = sys.modules[package.__name__ + "." + submodule]
        expected = getattr(module, name) if exported else module
        if getattr(package, name) is not expected:
            problems[service] = f"{{name}} is not {{submodule}}{{'.' + name if exported else ''}}"
            break
print(json.dumps(problems))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {}, (
        f"pulumi_gcp {version('pulumi_gcp')} changed how its services bind their names; "
        "agentstage/lazy_gcp.py reads them (last passed with pulumi_gcp 10.2.0)"
    )


# --- what agentstage.policy.decode_once relies on in pulumi-policy ---------------------------


def test_the_policy_analyzer_decodes_through_the_names_decode_once_wraps():
    """decode_once replaces three module-level names of pulumi_policy.policy and wraps the
    servicer's two analysis methods; if the SDK stops calling them the way it does now, the
    patch would silently do nothing, or worse."""
    from pulumi_policy import policy as sdk

    for name in ("json_format", "deserialize_properties", "unknown_checking_proxy", "_PolicyAnalyzerServicer"):
        assert hasattr(sdk, name), f"pulumi_policy.policy.{name} is gone {UPGRADE}; decode_once wraps it"
    servicer = sdk._PolicyAnalyzerServicer
    for method, call in (
        ("Analyze", "deserialize_properties(json_format.MessageToDict(request.properties))"),
        ("AnalyzeStack", "deserialize_properties(json_format.MessageToDict(r.properties))"),
        ("_get_provider_resource", "deserialize_properties(json_format.MessageToDict(prov.properties))"),
    ):
        source = inspect.getsource(getattr(servicer, method))
        assert call in source and "unknown_checking_proxy(deserialized)" in source, (
            f"pulumi_policy's {method} no longer decodes with {call} and unknown_checking_proxy {UPGRADE}"
        )


def test_each_policy_gets_its_own_copy_of_the_decoded_properties():
    """decode_once shares one decoded value among the policies of a request only because
    the SDK's proxy copies every dict and list into the view a policy receives: a policy
    that writes into its view changes neither the shared value nor another policy's view."""
    from pulumi_policy.deserialize import deserialize_properties
    from pulumi_policy.proxy import unknown_checking_proxy

    shared = deserialize_properties({"template": {"containers": [{"image": "x"}]}})
    first, second = unknown_checking_proxy(shared), unknown_checking_proxy(shared)
    first["template"]["containers"][0]["image"] = "changed"
    first["template"]["extra"] = 1
    assert shared == {"template": {"containers": [{"image": "x"}]}}, f"the proxy now writes through {UPGRADE}"
    assert second["template"]["containers"][0]["image"] == "x" and "extra" not in second["template"], (
        f"two proxies of one value now share their containers {UPGRADE}"
    )


def test_a_sub_message_is_the_same_object_on_every_access():
    """decode_once keys on identity: the protobuf runtime must hand out one wrapper object
    per sub-message."""
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeRequest.FromString(analyzer_pb2.AnalyzeRequest(type="t", urn="u").SerializeToString())
    assert request.properties is request.properties, "protobuf now builds a new wrapper per access"
    assert request.provider.properties is request.provider.properties


def test_decode_once_decodes_each_request_once_and_only_within_it(tmp_path):
    """In a separate interpreter (the patch is process-wide): within one Analyze call the
    same properties decode once; outside any call, and in the next call, afresh."""
    import subprocess
    import sys

    from agentstage.policy.process import DECODE_ONCE

    script = f"""
import importlib.util
from pulumi_policy import policy as sdk
spec = importlib.util.spec_from_file_location("d", {str(DECODE_ONCE)!r})
d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)
d.install(); d.install()  # idempotent
assert sdk.unknown_checking_proxy is d.unknown_checking_proxy
from pulumi.runtime.proto import analyzer_pb2
req = analyzer_pb2.AnalyzeRequest(type="t")
req.properties.update({{"a": {{"b": 1}}}})
seen = []
def body(self, request, context):
    first = sdk.deserialize_properties(sdk.json_format.MessageToDict(request.properties))
    again = sdk.deserialize_properties(sdk.json_format.MessageToDict(request.properties))
    seen.append((first is again, first["a"]["b"]))
wrapped = d._per_request(body)
wrapped(None, req, None)
wrapped(None, req, None)
outside = sdk.deserialize_properties(sdk.json_format.MessageToDict(req.properties))
print(seen, outside is sdk.deserialize_properties(sdk.json_format.MessageToDict(req.properties)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(True, 1.0), (True, 1.0)] False"


def test_the_sdk_proxy_keeps_what_the_lazy_view_builds_on():
    """decode_once's lazy view subclasses the SDK's ``_DictProxy`` and ``_ListProxy`` (so the
    SDK's serializer still unwraps it through ``__target``) and fills in their private copy and
    path, and reuses ``_append_prop`` and ``_raise_if_unknown``: if their shapes change, the
    lazy view would answer differently from the SDK's."""
    from pulumi_policy import proxy

    for name in ("_DictProxy", "_ListProxy", "_append_prop", "_raise_if_unknown"):
        assert hasattr(proxy, name), f"pulumi_policy.proxy.{name} is gone {UPGRADE}; decode_once builds on it"
    view = proxy._DictProxy({"k": 1}, ["p"])
    assert view._DictProxy__target == {"k": 1} and view._DictProxy__props_acc == ["p"], (
        f"pulumi_policy's _DictProxy no longer keeps its copy and path in __target/__props_acc {UPGRADE}"
    )
    items = proxy._ListProxy([1], ["p"])
    assert items._ListProxy__target == [1] and items._ListProxy__props_acc == ["p"], (
        f"pulumi_policy's _ListProxy no longer keeps its copy and path in __target/__props_acc {UPGRADE}"
    )
    assert proxy._append_prop(["a"], 0) == ["a", "0"], f"pulumi_policy's _append_prop changed {UPGRADE}"
    assert inspect.getsource(proxy._proxy_helper).count("_append_prop(props_acc,") == 2, (
        f"pulumi_policy's eager proxy now builds paths differently {UPGRADE}; compare decode_once's lazy view"
    )


def test_the_pack_can_list_the_stack_config(monkeypatch):
    """canary-first-step lists the stack config to find every ``<namespace>:agents`` key
    (policies/agent_guard/release.py, ``_agents_namespaces``): the config ``agentstage check``
    sets with ``pulumi.runtime.set_config`` is in the module global
    ``pulumi.runtime.config.CONFIG``, and the CLI's PULUMI_CONFIG is what
    ``pulumi.runtime.get_config_env`` returns. Run in a copy of the context: the SDK's default
    map is shared by the whole process."""
    import contextvars
    import json

    import pulumi.runtime
    from pulumi.runtime import config

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"cli-team:agents": "{}"}))

    def listed() -> tuple[set[str], set[str]]:
        config.CONFIG.set({})
        pulumi.runtime.set_config("team:agents", "{}")
        return set(config.CONFIG.get()), set(pulumi.runtime.get_config_env())

    assert hasattr(config, "CONFIG"), f"pulumi.runtime.config.CONFIG is gone {UPGRADE}; canary-first-step lists it"
    stored, env = contextvars.copy_context().run(listed)
    assert stored == {"team:agents"}, (
        f"pulumi.runtime.set_config no longer stores keys in pulumi.runtime.config.CONFIG {UPGRADE}; "
        "canary-first-step would find no team namespace under agentstage check"
    )
    assert env == {"cli-team:agents"}, f"pulumi.runtime.get_config_env no longer returns PULUMI_CONFIG {UPGRADE}"


def test_the_pins_in_pyproject_admit_only_the_tested_sdks():
    """pyproject.toml pins the SDKs to the releases these tests last passed with, so a fresh
    install never brings an SDK whose internals nobody checked."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    pins = {Requirement(line).name: Requirement(line).specifier for line in project["dependencies"]}
    for name, tested in TESTED.items():
        assert name in pins, f"pyproject.toml no longer depends on {name}"
        assert tested in pins[name], f"pyproject.toml pins {name}{pins[name]}, which excludes the tested {tested}"
        bigger = ".".join([*tested.split(".")[:-2], str(int(tested.split(".")[-2]) + 1), "0"])
        assert bigger not in pins[name], (
            f"pyproject.toml pins {name}{pins[name]}, which admits the untested {bigger}: run this file with it, "
            "then update TESTED and the pin"
        )
