"""What the analyzer is told about each resource, and the Analyzer messages that carry it.

A plan holds what the program registered. The Pulumi CLI tells an analyzer a little more:
the default provider it registers for each package (once, before the package's first
resource; the stack config's ``<package>:*`` keys are its inputs), and for every resource
the provider that manages it. :class:`ResourceMapper` adds both, resource by resource as
the program registers them; the functions below build the ``AnalyzeRequest`` and
``AnalyzeStackRequest`` messages from the result. Nothing here talks to a process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["AnalyzerResource", "ResourceMapper", "analyze_request", "analyzer_resources", "stack_request"]


def _struct(value: Mapping[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    from agentstage.engine import to_wire

    s = struct_pb2.Struct()
    s.update(to_wire(dict(value)))
    return s


class AnalyzerResource:
    """One resource as the analyzer sees it: the plan's record plus its provider."""

    __slots__ = (
        "urn",
        "type",
        "name",
        "inputs",
        "state",
        "parent",
        "dependencies",
        "property_dependencies",
        "provider",
        "options",
        "custom",
        "wire_inputs",
        "wire_outputs",
        "provider_msg",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def inputs_struct(self) -> Any:
        """The inputs for ``Analyze``: the Struct the program sent, when the plan kept it,
        else built from the plan's JSON form."""
        return self.wire_inputs if self.wire_inputs is not None else _struct(self.inputs or {})

    def state_struct(self) -> Any:
        """The state for ``AnalyzeStack`` (outputs; inputs for a resource without)."""
        if self.wire_outputs is not None:
            return self.wire_outputs
        if self.wire_inputs is not None and not self.state:
            return self.wire_inputs
        return _struct(self.state or {})

    def options_message(self) -> Any:
        from pulumi.runtime.proto import analyzer_pb2

        o = self.options or {}
        dbr = o.get("delete_before_replace")
        return analyzer_pb2.AnalyzerResourceOptions(
            protect=bool(o.get("protect")),
            ignoreChanges=list(o.get("ignore_changes") or []),
            deleteBeforeReplace=bool(dbr),
            deleteBeforeReplaceDefined=dbr is not None,
            additionalSecretOutputs=list(o.get("additional_secret_outputs") or []),
            aliases=list(o.get("aliases") or []),
            customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(),
            parent=self.parent or "",
        )

    def provider_message(self) -> Any:
        """The ``AnalyzerProviderResource`` of the provider that manages it (None for a
        provider, a component or the stack)."""
        from pulumi.runtime.proto import analyzer_pb2

        if self.provider is None:
            return None
        if self.provider_msg is not None:
            return self.provider_msg
        type_, urn, name, props = self.provider
        return analyzer_pb2.AnalyzerProviderResource(type=type_, urn=urn, name=name, properties=_struct(props or {}))


class ResourceMapper:
    """Plan resources -> what the analyzer is told, adding the default provider the CLI
    would register for each package (once, before its first resource). Resources arrive
    parents and providers first, as the engine registers them.

    ``use_wire``: pass on the Structs the program sent (only for a fresh, unedited plan)."""

    def __init__(self, project: str, stack: str, stack_config: Mapping[str, str], use_wire: bool = False) -> None:
        self.use_wire = use_wire
        self.prefix = f"urn:pulumi:{stack}::{project}::"
        self.config = stack_config
        self.defaults: dict[str, AnalyzerResource] = {}
        self.seen: dict[str, Any] = {}
        self.provider_msgs: dict[str, Any] = {}  # provider URN -> AnalyzerProviderResource

    def map(self, r: Any) -> list[AnalyzerResource]:
        """``r`` and, before it, the default provider of its package if it is the first."""
        out: list[AnalyzerResource] = []
        self.seen[r.urn] = r
        provider = None
        if r.custom and not r.type.startswith("pulumi:providers:"):
            if r.provider:
                p = self.seen.get(r.provider.rsplit("::", 1)[0])
                if p is not None:
                    provider = (p.type, p.urn, p.name, p.inputs)
            else:
                default = self._default_provider(r, out)
                provider = (default.type, default.urn, default.name, default.inputs)
        out.append(
            AnalyzerResource(
                urn=r.urn,
                type=r.type,
                name=r.name,
                inputs=r.inputs,
                state=r.outputs or r.inputs,
                parent=r.parent,
                dependencies=r.dependencies,
                property_dependencies=r.property_dependencies,
                provider=provider,
                options=r.options,
                custom=r.custom,
                wire_inputs=getattr(r, "wire_inputs", None) if self.use_wire else None,
                wire_outputs=getattr(r, "wire_outputs", None) if self.use_wire else None,
            )
        )
        if provider is not None:
            if provider[1] not in self.provider_msgs:
                self.provider_msgs[provider[1]] = out[-1].provider_message()
            out[-1].provider_msg = self.provider_msgs[provider[1]]
        return out

    def _default_provider(self, r: Any, out: list[AnalyzerResource]) -> AnalyzerResource:
        pkg = r.type.split(":", 1)[0]
        version = str(r.options.get("version") or "")
        key = f"{pkg}@{version}"
        if key not in self.defaults:
            name = "default" + ("_" + version.replace(".", "_").replace("-", "_") if version else "")
            props = {k.split(":", 1)[1]: v for k, v in self.config.items() if k.startswith(pkg + ":")}
            if version:
                props["version"] = version
            self.defaults[key] = AnalyzerResource(
                urn=f"{self.prefix}pulumi:providers:{pkg}::{name}",
                type=f"pulumi:providers:{pkg}",
                name=name,
                inputs=props,
                state=props,
                parent=None,
                dependencies=[],
                property_dependencies={},
                provider=None,
                options={},
                custom=True,
            )
            out.append(self.defaults[key])
        return self.defaults[key]


def analyzer_resources(plan: Any, stack_config: Mapping[str, str], use_wire: bool = False) -> list[AnalyzerResource]:
    """The plan's resources plus the default providers the CLI would register for them
    (providers first)."""
    mapper = ResourceMapper(plan.project, plan.stack, stack_config, use_wire)
    # The plan is in tree order (siblings by URN), where an explicit provider may come after
    # the resources it manages (``pulumi:providers:kubernetes`` sorts after ``kubernetes:``):
    # know every resource before mapping, as the engine knew the provider when it registered.
    mapper.seen.update((r.urn, r) for r in plan.resources)
    mapped = [m for r in plan.resources for m in mapper.map(r)]
    defaults = {d.urn for d in mapper.defaults.values()}
    return [*mapper.defaults.values(), *(m for m in mapped if m.urn not in defaults)]


def analyze_request(r: AnalyzerResource) -> Any:
    """``Analyze``: the resource's inputs, options and provider."""
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeRequest(
        type=r.type, name=r.name, urn=r.urn, properties=r.inputs_struct(), options=r.options_message()
    )
    provider = r.provider_message()
    if provider is not None:
        request.provider.CopyFrom(provider)
    return request


def stack_request(resources: Iterable[AnalyzerResource]) -> Any:
    """``AnalyzeStack``: every resource's state with its parent, dependencies and property
    dependencies."""
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeStackRequest()
    for r in resources:
        item = request.resources.add(
            type=r.type,
            name=r.name,
            urn=r.urn,
            properties=r.state_struct(),
            options=r.options_message(),
            parent=r.parent or "",
            dependencies=list(r.dependencies or []),
        )
        provider = r.provider_message()
        if provider is not None:
            item.provider.CopyFrom(provider)
        for key, urns in (r.property_dependencies or {}).items():
            if urns:
                item.propertyDependencies[key].urns.extend(urns)
    return request
