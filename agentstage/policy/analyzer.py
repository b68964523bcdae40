"""A synchronous client of the Pulumi Analyzer protocol, and what its answers mean.

:class:`AnalyzerClient` speaks to one analyzer (a policy pack's gRPC server) with the SDK's
generated stubs, in the order the Pulumi CLI does: ``Handshake`` (optional, as for the CLI),
``GetAnalyzerInfo``, ``ConfigureStack``, ``Configure`` (the policy config with schema
defaults filled in and validated), ``Analyze`` per resource and ``AnalyzeStack``. It knows
nothing of processes: a failed call goes to the ``failure`` function its owner gives it,
which says what happened (an exited process, a crash, a timeout) as a
:class:`~agentstage.policy.process.PolicyError`.

:func:`violations` turns an answer into report entries, refusing a violation of a policy the
pack never declared or of a resource that is not in the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentstage.policy.config import PolicySetting, reconcile
from agentstage.policy.process import PolicyError
from agentstage.policy.report import PolicyInfo, Violation

__all__ = ["MAX_MESSAGE", "AnalyzerClient", "PackInfo", "reconcile_settings", "violations"]

#: Plans of thousands of resources make large AnalyzeStack requests.
MAX_MESSAGE = 1024 * 1024 * 400


@dataclass
class PackInfo:
    """What ``GetAnalyzerInfo`` says: the pack's name and version, its policies, and the
    config it declares for them."""

    name: str
    version: str
    policies: list[PolicyInfo]
    initial: dict[str, PolicySetting] = field(default_factory=dict)


def _ints(value: Any) -> Any:
    """Wire numbers are doubles: show a schema default of 100 as 100, not 100.0."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _severity(value: int) -> str:
    from pulumi.runtime.proto import analyzer_pb2

    name = analyzer_pb2.PolicySeverity.Name(value)
    return "" if name.endswith("UNSPECIFIED") else name.removeprefix("POLICY_SEVERITY_").lower()


class AnalyzerClient:
    """One analyzer at ``127.0.0.1:port``. ``failure(doing, rpc_error)`` builds the error
    raised when a call fails ("during Configure", "while analysing <urn>"...)."""

    def __init__(
        self,
        port: int,
        failure: Callable[[str, Any], PolicyError],
        *,
        rpc_timeout: float = 300.0,
    ) -> None:
        import grpc
        from pulumi.runtime.proto import analyzer_pb2_grpc

        self.failure = failure
        self.rpc_timeout = rpc_timeout
        self._channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def handshake(self, engine_address: str, directory: str, *, timeout: float) -> None:
        """``Handshake``, waiting up to ``timeout`` for the server to accept connections; a
        pack without it is accepted, as by the CLI."""
        import grpc
        from pulumi.runtime.proto import analyzer_pb2

        try:
            self._stub.Handshake(
                analyzer_pb2.AnalyzerHandshakeRequest(
                    engine_address=engine_address, root_directory=directory, program_directory=directory
                ),
                timeout=timeout,
                wait_for_ready=True,
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise self.failure("during Handshake", err) from None

    def info(self, *, default_name: str, manifest_version: str) -> PackInfo:
        """``GetAnalyzerInfo``: the pack's policies. The version in ``PulumiPolicy.yaml``
        wins over the pack's own, as with the CLI."""
        import grpc
        from google.protobuf import empty_pb2, json_format
        from pulumi.runtime.proto import analyzer_pb2

        try:
            info = self._stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            raise self.failure("answering GetAnalyzerInfo", err) from None
        name = info.name or default_name
        policies = []
        for p in info.policies:
            schema = _ints(json_format.MessageToDict(p.configSchema.properties)) if p.HasField("configSchema") else {}
            kind = "stack" if p.policy_type == analyzer_pb2.PolicyType.POLICY_TYPE_STACK else "resource"
            policies.append(
                PolicyInfo(
                    name=p.name,
                    description=p.description,
                    enforcement=analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel).lower(),
                    severity=_severity(p.severity),
                    kind=kind,
                    config_schema={"properties": schema, "required": list(p.configSchema.required)},
                    framework=p.framework.name,
                    reference=p.framework.reference,
                    tags=list(p.tags),
                    remediation=p.remediation_steps,
                    url=p.url,
                )
            )
        if not policies:
            raise PolicyError(f"policy pack {name} declares no policies")
        initial = {}
        for key, value in info.initialConfig.items():
            initial[key] = PolicySetting(
                analyzer_pb2.EnforcementLevel.Name(value.enforcementLevel).lower() if value.enforcementLevel else None,
                json_format.MessageToDict(value.properties),
            )
        return PackInfo(name=name, version=manifest_version or info.version, policies=policies, initial=initial)

    def configure_stack(
        self, *, project: str, stack: str, config: Mapping[str, str], secret_keys: Sequence[str]
    ) -> None:
        """``ConfigureStack`` (a pack that does not implement it is accepted)."""
        import grpc
        from pulumi.runtime.proto import analyzer_pb2

        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=stack, project=project, dry_run=True, config_secret_keys=list(secret_keys)
        )
        for key, value in config.items():
            request.config[key] = value
        try:
            self._stub.ConfigureStack(request, timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise self.failure("during ConfigureStack", err) from None

    def configure(self, settings: Mapping[str, PolicySetting]) -> None:
        """``Configure`` with already reconciled settings (see :func:`reconcile_settings`)."""
        import grpc
        from pulumi.runtime.proto import analyzer_pb2

        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, setting in settings.items():
            entry = request.policyConfig[name]
            entry.enforcementLevel = analyzer_pb2.EnforcementLevel.Value(setting.enforcement.upper())
            entry.properties.update(setting.properties)
        try:
            self._stub.Configure(request, timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            raise self.failure("during Configure", err) from None

    def analyze(self, request: Any) -> Any:
        """``Analyze`` one resource; the call's future (``.result()`` raises ``grpc.RpcError``)."""
        return self._stub.Analyze.future(request, timeout=self.rpc_timeout)

    def analyze_stack(self, request: Any) -> Any:
        """``AnalyzeStack``; the call's future."""
        return self._stub.AnalyzeStack.future(request, timeout=self.rpc_timeout)


def reconcile_settings(
    info: PackInfo, config: Mapping[str, PolicySetting] | None, source: str | None
) -> dict[str, PolicySetting]:
    """The pack's own initial config overlaid with ``config``, checked against each policy's
    schema, defaults filled in."""
    merged = {**info.initial, **(config or {})}
    return reconcile(info.policies, merged, source=f"policy config {source}" if source else "policy config")


def violations(
    pack_name: str,
    policies: Sequence[PolicyInfo],
    response: Any,
    urn: str | None,
    by_urn: Mapping[str, Any],
) -> list[Violation]:
    """The violations an ``AnalyzeResponse`` reports (for the resource ``urn``, or for the
    stack when None). ``by_urn``: the resources of the stack (type and name)."""
    from pulumi.runtime.proto import analyzer_pb2

    known = {p.name: p for p in policies}
    out = []
    for d in response.diagnostics:
        policy = known.get(d.policyName)
        if policy is None:
            raise PolicyError(
                f"policy pack {pack_name} reported a violation of {d.policyName!r}, a policy it never declared "
                f"(message: {d.message!r})"
            )
        target = urn or d.urn or None
        if target is not None and target not in by_urn:
            raise PolicyError(
                f"policy pack {pack_name} reported {d.policyName} on {target}, a resource that is not in the stack"
            )
        message = d.message
        if d.description and message.startswith(d.description):
            message = message[len(d.description) :].lstrip("\n") or d.description
        res = by_urn.get(target) if target else None
        out.append(
            Violation(
                policy=d.policyName,
                enforcement=analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel).lower(),
                severity=_severity(d.severity) or policy.severity,
                urn=target,
                message=message,
                description=d.description or policy.description,
                resource_type=res.type if res else None,
                resource_name=res.name if res else None,
            )
        )
    return out
