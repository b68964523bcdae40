"""Run an unmodified CrossGuard policy pack on an offline plan, as the Pulumi CLI does.

The pack is started the way the CLI's ``pulumi-analyzer-policy-python`` plugin starts it:
the SDK's ``python -m pulumi.policy <engine address> .`` in the pack directory, with the
project, stack and dry-run flag in the environment (``PULUMI_PROJECT``...). The stack config,
which the CLI puts in the environment too (``PULUMI_CONFIG``), reaches the pack's runtime
through its stdin instead, so a stack of any size can be checked (see :data:`_PACK_MAIN`).
It prints the port of its Analyzer gRPC server; the runner then
speaks the Analyzer protocol with the SDK's generated stubs: ``Handshake`` (optional, as for
the CLI), ``GetAnalyzerInfo``, ``ConfigureStack``, ``Configure`` (the policy config with
schema defaults filled in and validated), ``Analyze`` per resource (inputs, options,
provider) and ``AnalyzeStack`` (every resource with parent, dependencies and property
dependencies). The engine address is a real Engine gRPC service on 127.0.0.1 that records
what the pack logs.

Anything unexpected from the pack (it does not start, exits, raises, answers with a policy
it never declared) is a :class:`PolicyError` that says so, never a pass.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentstage.errors import Failed
from agentstage.policy.config import PolicyConfigError, PolicySetting, load_policy_config, reconcile
from agentstage.policy.report import CheckReport, PolicyInfo, Violation, sort_violations

__all__ = ["PACK_DIR", "PolicyError", "PolicyPackProcess", "default_policy_config", "display_path", "run_check"]

#: The agent_guard pack shipped with agentstage.
PACK_DIR = Path(__file__).resolve().parent.parent.parent / "policies" / "agent_guard"

_MAX_MESSAGE = 1024 * 1024 * 400
_STACK_TYPE = "pulumi:pulumi:Stack"
#: From this many resources on, a check starts a second pack process for AnalyzeStack.
LARGE_PLAN = 500
#: At most this many ``Analyze`` calls wait for their answer at a time.
MAX_IN_FLIGHT = 1000


class PolicyError(Failed):
    """The policy pack cannot be used: it is missing, does not start, crashes or misbehaves."""


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def default_policy_config(stack: str, pack_dir: str | os.PathLike[str] = PACK_DIR) -> Path | None:
    """``<pack>/config/<stack>.json`` when it exists."""
    path = Path(pack_dir) / "config" / f"{stack}.json"
    return path if path.is_file() else None


# --- wire values ------------------------------------------------------------------------


def _struct(value: Mapping[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    from agentstage.engine import to_wire

    s = struct_pb2.Struct()
    s.update(to_wire(dict(value)))
    return s


def _inputs_struct(r: Any) -> Any:
    """The resource's inputs for ``Analyze``: the Struct the program sent, when the plan
    kept it, else built from the plan's JSON form."""
    return r.wire_inputs if r.wire_inputs is not None else _struct(r.inputs or {})


def _state_struct(r: Any) -> Any:
    """The resource's state for ``AnalyzeStack`` (outputs; inputs for a resource without)."""
    if r.wire_outputs is not None:
        return r.wire_outputs
    if r.wire_inputs is not None and not r.state:
        return r.wire_inputs
    return _struct(r.state or {})


class _Resource:
    """What the analyzer is told about one resource."""

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
        "labels",
        "wire_inputs",
        "wire_outputs",
        "provider_msg",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class _Mapper:
    """Plan resources -> what the analyzer is told, adding the default provider the CLI
    would register for each package (once, before its first resource). Resources arrive
    parents and providers first, as the engine registers them."""

    def __init__(self, project: str, stack: str, stack_config: Mapping[str, str], use_wire: bool = False) -> None:
        self.use_wire = use_wire  # pass on the Structs the program sent (only for a fresh, unedited plan)
        self.prefix = f"urn:pulumi:{stack}::{project}::"
        self.config = stack_config
        self.defaults: dict[str, _Resource] = {}
        self.seen: dict[str, Any] = {}
        self.provider_msgs: dict[str, Any] = {}  # provider URN -> AnalyzerProviderResource

    def map(self, r: Any) -> list[_Resource]:
        out: list[_Resource] = []
        self.seen[r.urn] = r
        provider = None
        if r.custom and not r.type.startswith("pulumi:providers:"):
            if r.provider:
                p = self.seen.get(r.provider.rsplit("::", 1)[0])
                if p is not None:
                    provider = (p.type, p.urn, p.name, p.inputs)
            else:
                pkg = r.type.split(":", 1)[0]
                version = str(r.options.get("version") or "")
                key = f"{pkg}@{version}"
                if key not in self.defaults:
                    name = "default" + ("_" + version.replace(".", "_").replace("-", "_") if version else "")
                    props = {k.split(":", 1)[1]: v for k, v in self.config.items() if k.startswith(pkg + ":")}
                    if version:
                        props["version"] = version
                    self.defaults[key] = _Resource(
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
                d = self.defaults[key]
                provider = (d.type, d.urn, d.name, d.inputs)
        out.append(
            _Resource(
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
                self.provider_msgs[provider[1]] = _provider(out[-1])
            out[-1].provider_msg = self.provider_msgs[provider[1]]
        return out


def _resources(plan: Any, stack_config: Mapping[str, str], use_wire: bool = False) -> list[_Resource]:
    """The plan's resources plus the default providers the CLI would register for them
    (providers first)."""
    mapper = _Mapper(plan.project, plan.stack, stack_config, use_wire)
    mapped = [m for r in plan.resources for m in mapper.map(r)]
    defaults = {d.urn for d in mapper.defaults.values()}
    return [*mapper.defaults.values(), *(m for m in mapped if m.urn not in defaults)]


def _options(r: _Resource) -> Any:
    from pulumi.runtime.proto import analyzer_pb2

    o = r.options or {}
    dbr = o.get("delete_before_replace")
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(o.get("protect")),
        ignoreChanges=list(o.get("ignore_changes") or []),
        deleteBeforeReplace=bool(dbr),
        deleteBeforeReplaceDefined=dbr is not None,
        additionalSecretOutputs=list(o.get("additional_secret_outputs") or []),
        aliases=list(o.get("aliases") or []),
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(),
        parent=r.parent or "",
    )


def _provider(r: _Resource) -> Any:
    from pulumi.runtime.proto import analyzer_pb2

    if r.provider is None:
        return None
    if r.provider_msg is not None:
        return r.provider_msg
    type_, urn, name, props = r.provider
    return analyzer_pb2.AnalyzerProviderResource(type=type_, urn=urn, name=name, properties=_struct(props or {}))


# --- the engine service the pack is pointed at ------------------------------------------


def _engine_server() -> tuple[Any, str, list[str]]:
    """A minimal Engine gRPC service on 127.0.0.1: it records what the pack logs."""
    from concurrent import futures

    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

    log: list[str] = []

    class Engine(engine_pb2_grpc.EngineServicer):
        root = ""

        def Log(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method
            level = engine_pb2.LogSeverity.Name(request.severity).lower()
            where = f" ({request.urn})" if request.urn else ""
            log.append(f"{level}: {request.message}{where}")
            return empty_pb2.Empty()

        def GetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
            return engine_pb2.GetRootResourceResponse(urn=self.root)

        def SetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
            self.root = request.urn
            return engine_pb2.SetRootResourceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(Engine(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}", log


# --- the pack process -------------------------------------------------------------------

#: The pack process's entry point: the SDK's own ``python -m pulumi.policy <engine> <pack>``,
#: run after the stack config, read as JSON from stdin, has been set with
#: ``pulumi.runtime.set_config``, which is what that entry point itself does with the
#: ``PULUMI_CONFIG`` the CLI puts in its environment. Through the environment the config is
#: capped at 128 KiB (Linux's limit on one environment string: ``Argument list too long``
#: from about 105 agents on), and pulumi_policy parses ``PULUMI_CONFIG`` again on every
#: ``Analyze`` call (1.6 ms a call at 100 agents, about 4 s of a check; 14 ms at 1,000 agents,
#: about 7 minutes: quadratic in the size of the stack). The SDK reads the config nowhere
#: else: ``ConfigureStack`` carries it too
#: (the runner sends it, as the CLI does), but pulumi_policy takes only the stack tags from
#: it. The pack itself runs unmodified, and reads the config as under the CLI:
#: ``pulumi.runtime.get_config``, ``pulumi.Config``.
_PACK_MAIN = (
    "import json, runpy, sys\n"
    "import pulumi.runtime\n"
    "for key, value in json.loads(sys.stdin.buffer.read() or b'{}').items():\n"
    "    pulumi.runtime.set_config(key, value)\n"
    "runpy.run_module('pulumi.policy', run_name='__main__', alter_sys=True)\n"
)


def _send_config(stream: Any, config: bytes) -> None:
    """Write the stack config to the pack's stdin (on its own thread: a config larger than
    the pipe's buffer waits for the pack to read it)."""
    try:
        stream.write(config)
    except OSError:  # the pack exited first; connect() says how
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


def _read_pack_yaml(pack_dir: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    manifest = pack_dir / "PulumiPolicy.yaml"
    if not pack_dir.is_dir():
        raise PolicyError(f"policy pack directory {pack_dir} does not exist")
    if not manifest.is_file():
        raise PolicyError(f"{pack_dir} is not a policy pack: it has no PulumiPolicy.yaml")
    try:
        data = YAML(typ="safe", pure=True).load(manifest.read_text()) or {}
    except YAMLError as err:
        raise PolicyError(f"{manifest}: not valid YAML: {err}") from None
    runtime = data.get("runtime")
    name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if name != "python":
        raise PolicyError(f"{manifest}: runtime is {name!r}; agentstage check runs Python policy packs")
    return data


class PolicyPackProcess:
    """A running policy pack and an Analyzer client for it.

    ``launch()`` starts the process (so it can boot while the plan runs); ``connect()``
    waits for its port and reads its policies. Use it as a context manager to do both and to
    stop the process at the end. One process can check many plans: call ``configure()``
    and ``check()`` as often as needed. The stack config the pack sees
    (``pulumi.runtime.get_config``) is fixed when it starts, as with the CLI."""

    def __init__(
        self,
        pack_dir: str | os.PathLike[str] = PACK_DIR,
        *,
        project: str = "",
        stack: str = "",
        config: Mapping[str, str] | None = None,
        secret_keys: Sequence[str] = (),
        python: str | None = None,
        start_timeout: float = 60.0,
        rpc_timeout: float = 300.0,
    ) -> None:
        self.pack_dir = Path(pack_dir).resolve()
        self.manifest = _read_pack_yaml(self.pack_dir)
        self.project = project
        self.stack = stack
        self.config = dict(config or {})
        self.secret_keys = list(secret_keys)
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.rpc_timeout = rpc_timeout
        self.name = str(self.pack_dir.name)
        self.version = str(self.manifest.get("version") or "")
        self.policies: list[PolicyInfo] = []
        self.settings: dict[str, PolicySetting] = {}
        self.policy_config_source: str | None = None
        self.log: list[str] = []
        self.engine_address = ""
        self._initial: dict[str, PolicySetting] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._engine: Any = None
        self._channel: Any = None
        self._stub: Any = None
        self._stderr: deque[str] = deque(maxlen=60)
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> PolicyPackProcess:
        try:
            self.launch()
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def launch(self) -> None:
        self._engine, self.engine_address, self.log = _engine_server()
        # The stack config goes through the pack's stdin, not PULUMI_CONFIG: see _PACK_MAIN.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
        env.update(
            PULUMI_CONFIG_SECRET_KEYS=json.dumps(self.secret_keys),
            PULUMI_PROJECT=self.project,
            PULUMI_STACK=self.stack,
            PULUMI_DRY_RUN="true",
        )
        args = [self.python, "-u", "-c", _PACK_MAIN, self.engine_address, "."]
        try:
            self._proc = subprocess.Popen(
                args,
                cwd=self.pack_dir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as err:
            raise PolicyError(f"cannot start the policy pack with {self.python}: {err.strerror}") from None
        config = json.dumps(self.config).encode()
        for target, stream in (
            (self._pump_stdout, self._proc.stdout),
            (self._pump_stderr, self._proc.stderr),
            (lambda s: _send_config(s, config), self._proc.stdin),
        ):
            t = threading.Thread(target=target, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump_stdout(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._stdout.put(raw.decode(errors="replace").rstrip("\n"))
        self._stdout.put(None)

    def _pump_stderr(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._stderr.append(raw.decode(errors="replace").rstrip("\n"))

    def _tail(self) -> str:
        time.sleep(0.05)  # let the pipe readers catch the last lines
        lines = [line for line in self._stderr if line.strip()]
        return ("\n  " + "\n  ".join(lines[-25:])) if lines else ""

    def connect(self) -> None:
        import grpc
        from google.protobuf import empty_pb2
        from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + self.start_timeout
        port: int | None = None
        while port is None:
            try:
                line = self._stdout.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PolicyError(
                    f"policy pack {self.pack_dir} did not print its port within {self.start_timeout:g}s{self._tail()}"
                ) from None
            if line is None:
                code = self._proc.wait()
                raise PolicyError(f"policy pack {self.pack_dir} failed to start (exit code {code}){self._tail()}")
            if not line.strip():
                continue
            try:
                port = int(line.strip())
            except ValueError:
                raise PolicyError(
                    f"policy pack {self.pack_dir} printed {line.strip()!r} where the Analyzer port was expected"
                ) from None
        self._channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)],
        )
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)
        try:
            self._stub.Handshake(
                analyzer_pb2.AnalyzerHandshakeRequest(
                    engine_address=self.engine_address,
                    root_directory=str(self.pack_dir),
                    program_directory=str(self.pack_dir),
                ),
                timeout=self.start_timeout,
                wait_for_ready=True,
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:  # the CLI also accepts a pack without Handshake
                raise self._failure("during Handshake", err) from None
        try:
            info = self._stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            raise self._failure("answering GetAnalyzerInfo", err) from None
        self._read_info(info)
        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=self.stack, project=self.project, dry_run=True, config_secret_keys=self.secret_keys
        )
        for key, value in self.config.items():
            request.config[key] = value
        try:
            self._stub.ConfigureStack(request, timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise self._failure("during ConfigureStack", err) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            self._proc = None
        if self._engine is not None:
            self._engine.stop(0)
            self._engine = None
        for t in self._threads:
            t.join(timeout=1)
        self._threads = []

    # --- protocol -------------------------------------------------------------------------

    def _failure(self, doing: str, err: Any) -> PolicyError:
        import grpc

        code = None
        if self._proc is not None:
            try:  # a dead pack closes its socket a moment before its exit status is known
                code = self._proc.wait(timeout=2 if err.code() == grpc.StatusCode.UNAVAILABLE else 0.05)
            except subprocess.TimeoutExpired:
                code = None
        if code is not None:
            return PolicyError(f"policy pack {self.name} exited (exit code {code}) {doing}{self._tail()}")
        status = err.code()
        if status == grpc.StatusCode.UNKNOWN:
            return PolicyError(f"policy pack {self.name} crashed {doing}: {err.details()}{self._tail()}")
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PolicyError(f"policy pack {self.name} did not answer within {self.rpc_timeout:g}s {doing}")
        return PolicyError(f"policy pack {self.name} failed {doing}: {status.name}: {err.details()}{self._tail()}")

    def _read_info(self, info: Any) -> None:
        from google.protobuf import json_format
        from pulumi.runtime.proto import analyzer_pb2

        self.name = info.name or self.name
        self.version = self.version or info.version  # PulumiPolicy.yaml wins, as with the CLI
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
            raise PolicyError(f"policy pack {self.name} declares no policies")
        self.policies = policies
        self._initial = {}
        for key, value in info.initialConfig.items():
            props = json_format.MessageToDict(value.properties)
            self._initial[key] = PolicySetting(
                analyzer_pb2.EnforcementLevel.Name(value.enforcementLevel).lower() if value.enforcementLevel else None,
                props,
            )

    def configure(self, config: Mapping[str, PolicySetting] | None = None, *, source: str | None = None) -> None:
        """Reconcile ``config`` with the pack's policies and send it (``Configure``)."""
        import grpc
        from pulumi.runtime.proto import analyzer_pb2

        merged: dict[str, PolicySetting] = {}
        for key, value in {**self._initial, **(config or {})}.items():
            merged[key] = value
        self.settings = reconcile(
            self.policies, merged, source=f"policy config {source}" if source else "policy config"
        )
        self.policy_config_source = source
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, setting in self.settings.items():
            entry = request.policyConfig[name]
            entry.enforcementLevel = analyzer_pb2.EnforcementLevel.Value(setting.enforcement.upper())
            entry.properties.update(setting.properties)
        for p in self.policies:
            p.enforcement = self.settings[p.name].enforcement or p.enforcement
            p.config = dict(self.settings[p.name].properties)
        try:
            self._stub.Configure(request, timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            raise self._failure("during Configure", err) from None

    def analyze(self, plan: Any) -> tuple[list[Violation], int, float]:
        """Run every resource of ``plan`` through ``Analyze`` and the whole stack through
        ``AnalyzeStack``: (violations in report order, resources analysed, seconds)."""
        if not self.settings:
            self.configure({})
        stream = _AnalysisStream(self, plan.project, plan.stack)
        stream.open()
        for r in plan.resources:
            stream.feed(r)
        return stream.finish(plan)

    def plan_and_check(
        self,
        make_plan: Any,
        settings: Mapping[str, PolicySetting] | None = None,
        *,
        source: str | None = None,
        stack_config_path: str | None = None,
        large_plan: int | None = None,
    ) -> tuple[Any, CheckReport]:
        """Make the plan and analyse it at the same time: ``make_plan(on_resource)`` runs
        the program and calls ``on_resource`` with each resource as it is registered; each
        goes to ``Analyze`` at once (after ``connect``/``configure``, done meanwhile on
        another thread), so the pack works on its own core while the program still runs.
        ``AnalyzeStack`` follows the complete plan; for a large plan it goes to a second
        process of the same pack, started while the program runs, so it overlaps the first
        one's backlog of ``Analyze`` calls (``large_plan``: from how many resources on;
        default :data:`LARGE_PLAN`). Returns (plan, report)."""
        started = time.perf_counter()
        helper = _StackHelper(self, settings or {}, source)
        stream = _AnalysisStream(
            self, self.project, self.stack, on_large=helper.start, large_plan=large_plan, use_wire=True
        )
        errors: list[BaseException] = []

        def connect() -> None:
            try:
                self.connect()
                self.configure(settings or {}, source=source)
                stream.open()
            except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
                errors.append(err)
                stream.abandon()

        connector = threading.Thread(target=connect, name="policy-pack-connect", daemon=True)
        connector.start()
        # As the engine does while the program runs: the plan's objects make the heap large,
        # and the collector's full passes over it would slow the analysis as much.
        collecting = gc.isenabled()
        gc.disable()
        try:
            try:
                plan = make_plan(stream.feed)
            finally:
                connector.join()
            if errors:
                raise errors[0]
            violations, count, seconds = stream.finish(plan, stack_pack=helper.ready())
        finally:
            helper.close()
            if collecting:
                gc.enable()
        report = self._report(plan, violations, count, seconds, stack_config_path)
        report.elapsed_s = time.perf_counter() - started
        return plan, report

    def _violations(self, response: Any, urn: str | None, by_urn: Mapping[str, _Resource]) -> list[Violation]:
        from pulumi.runtime.proto import analyzer_pb2

        known = {p.name: p for p in self.policies}
        out = []
        for d in response.diagnostics:
            policy = known.get(d.policyName)
            if policy is None:
                raise PolicyError(
                    f"policy pack {self.name} reported a violation of {d.policyName!r}, a policy it never declared "
                    f"(message: {d.message!r})"
                )
            target = urn or d.urn or None
            if target is not None and target not in by_urn:
                raise PolicyError(
                    f"policy pack {self.name} reported {d.policyName} on {target}, a resource that is not in the stack"
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

    def check(self, plan: Any, *, stack_config_path: str | None = None) -> CheckReport:
        """Analyse ``plan`` and build the report."""
        started = time.perf_counter()
        violations, count, seconds = self.analyze(plan)
        report = self._report(plan, violations, count, seconds, stack_config_path)
        report.elapsed_s = time.perf_counter() - started
        return report

    def _report(
        self, plan: Any, violations: list[Violation], count: int, seconds: float, stack_config_path: str | None
    ) -> CheckReport:
        report = CheckReport(
            project=plan.project,
            stack=plan.stack,
            stack_config=stack_config_path or plan.config_path,
            pack_name=self.name,
            pack_version=self.version,
            pack_dir=str(self.pack_dir),
            policy_config=self.policy_config_source,
            policies=list(self.policies),
            violations=violations,
            resources=count,
            analysis_s=seconds,
            pack_log=list(self.log),
        )
        report.locator = lambda rep: _locate_agents(rep, plan)
        return report


class _StackHelper:
    """A second process of the same pack for ``AnalyzeStack``, started only for large
    plans. If it cannot be used, the main pack answers ``AnalyzeStack`` as usual."""

    def __init__(self, pack: PolicyPackProcess, settings: Mapping[str, PolicySetting], source: str | None) -> None:
        self.pack = pack
        self.settings = settings
        self.source = source
        self.helper: PolicyPackProcess | None = None
        self.thread: threading.Thread | None = None
        self.ok = False

    def start(self) -> None:
        p = self.pack
        self.helper = PolicyPackProcess(
            p.pack_dir,
            project=p.project,
            stack=p.stack,
            config=p.config,
            secret_keys=p.secret_keys,
            python=p.python,
            start_timeout=p.start_timeout,
            rpc_timeout=p.rpc_timeout,
        )

        def boot() -> None:
            try:
                assert self.helper is not None
                self.helper.launch()
                self.helper.connect()
                self.helper.configure(self.settings, source=self.source)
                self.ok = True
            except Exception:  # noqa: BLE001 - the main pack does the work instead
                self.ok = False

        self.thread = threading.Thread(target=boot, name="policy-pack-stack-helper", daemon=True)
        self.thread.start()

    def ready(self) -> PolicyPackProcess | None:
        if self.thread is None:
            return None
        self.thread.join()
        return self.helper if self.ok else None

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.helper is not None:
            self.helper.close()


class _AnalysisStream:
    """``Analyze`` requests sent as resources arrive, their answers collected at the end.

    Resources fed before the pack is ready wait in a buffer; ``open()`` sends them.
    ``on_large`` is called once when the plan reaches ``large_plan`` resources."""

    def __init__(
        self,
        pack: PolicyPackProcess,
        project: str,
        stack: str,
        on_large: Any = None,
        large_plan: int | None = None,
        use_wire: bool = False,
    ) -> None:
        self.pack = pack
        self.use_wire = use_wire
        self.on_large = on_large
        self.large_plan = large_plan or LARGE_PLAN
        self.fed = 0
        self.mapper = _Mapper(project, stack, pack.config, use_wire)
        self.lock = threading.Lock()
        self.ready = False
        self.abandoned = False
        self.buffer: list[_Resource] = []
        self.pending: list[tuple[_Resource, Any]] = []
        self.in_flight: deque[Any] = deque()  # sent, answer not yet seen, oldest first
        self.busy = 0.0  # seconds spent building and sending requests

    def open(self) -> None:
        with self.lock:
            self.ready = True
            buffered, self.buffer = self.buffer, []
            for r in buffered:
                self._send(r)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            self.buffer = []

    def feed(self, record: Any) -> None:
        self.fed += 1
        if self.fed == self.large_plan and self.on_large is not None:
            self.on_large()
        with self.lock:
            if self.abandoned:
                return
            for r in self.mapper.map(record):
                if self.ready:
                    self._send(r)
                else:
                    self.buffer.append(r)

    def _send(self, r: _Resource) -> None:
        from pulumi.runtime.proto import analyzer_pb2

        t = time.perf_counter()
        request = analyzer_pb2.AnalyzeRequest(
            type=r.type, name=r.name, urn=r.urn, properties=_inputs_struct(r), options=_options(r)
        )
        provider = _provider(r)
        if provider is not None:
            request.provider.CopyFrom(provider)
        future = self.pack._stub.Analyze.future(request, timeout=self.pack.rpc_timeout)
        self.pending.append((r, future))
        self.busy += time.perf_counter() - t
        # When the program registers resources faster than the pack analyses them, wait for
        # the oldest answers: tens of thousands of calls in flight on one channel end in
        # CANCELLED (seen at 1,000 agents, about 29,000 resources).
        self.in_flight.append(future)
        while self.in_flight and (self.in_flight[0].done() or len(self.in_flight) > MAX_IN_FLIGHT):
            oldest = self.in_flight.popleft()
            try:
                oldest.exception()  # waits for the answer; finish() reports an error
            except Exception:  # noqa: BLE001 - cancelled: finish() reports it too
                pass

    def finish(self, plan: Any, stack_pack: PolicyPackProcess | None = None) -> tuple[list[Violation], int, float]:
        """Collect every answer and ``AnalyzeStack`` (on ``stack_pack`` when given, while
        the answers come in): (violations in report order, resources analysed, seconds of
        analysis not overlapped with the plan, plus send time)."""
        import grpc
        from pulumi.runtime.proto import analyzer_pb2

        started = time.perf_counter()
        resources = _resources(plan, self.pack.config, self.use_wire)
        order = {r.urn: i for i, r in enumerate(resources)}
        by_urn = {r.urn: r for r in resources}

        stack_request = analyzer_pb2.AnalyzeStackRequest()
        for r in resources:
            item = stack_request.resources.add(
                type=r.type,
                name=r.name,
                urn=r.urn,
                properties=_state_struct(r),
                options=_options(r),
                parent=r.parent or "",
                dependencies=list(r.dependencies or []),
            )
            provider = _provider(r)
            if provider is not None:
                item.provider.CopyFrom(provider)
            for key, urns in (r.property_dependencies or {}).items():
                if urns:
                    item.propertyDependencies[key].urns.extend(urns)
        stack_analyzer = stack_pack or self.pack
        stack_future = None
        if stack_pack is not None:
            stack_future = stack_pack._stub.AnalyzeStack.future(stack_request, timeout=stack_pack.rpc_timeout)

        violations: list[Violation] = []
        for r, future in self.pending:
            try:
                response = future.result()
            except grpc.RpcError as err:
                for _, other in self.pending:
                    other.cancel()
                if stack_future is not None:
                    stack_future.cancel()
                raise self.pack._failure(f"while analysing {r.urn}", err) from None
            violations += self.pack._violations(response, r.urn, by_urn)

        try:
            if stack_future is not None:
                response = stack_future.result()
            else:
                response = self.pack._stub.AnalyzeStack(stack_request, timeout=self.pack.rpc_timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise stack_analyzer._failure("while analysing the stack (AnalyzeStack)", err) from None
        else:
            violations += self.pack._violations(response, None, by_urn)
        seconds = self.busy + time.perf_counter() - started
        return sort_violations(violations, order), len(resources), seconds


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


def _locate_agents(report: CheckReport, plan: Any) -> None:
    """Map resources to agents and agents to their line in the stack config (SARIF)."""
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="rt").load(Path(report.stack_config).read_text()) or {}
        config = data.get("config") or {}
    except Exception:  # noqa: BLE001 - locations are a convenience; the report stands without them
        return
    for key in (f"{plan.project}:agents", "agents"):
        agents = config.get(key)
        if hasattr(agents, "lc"):
            for name in agents:
                report.agent_lines[str(name)] = agents.lc.key(name)[0] + 1
            break
    if not report.agent_lines:
        return
    by_urn = {r.urn: r for r in plan.resources}
    for r in plan.resources:
        node = r
        while node is not None:
            label = (
                (node.inputs.get("labels") or {}).get("agent") if isinstance(node.inputs.get("labels"), dict) else None
            )
            name = label if label in report.agent_lines else node.name if node.name in report.agent_lines else None
            if name:
                report.resource_agents[r.urn] = name
                break
            node = by_urn.get(node.parent) if node.parent else None


# --- the one-call API -------------------------------------------------------------------


def run_check(
    project_dir: str | os.PathLike[str],
    stack: str,
    *,
    config_file: str | os.PathLike[str] | None = None,
    policy_config: str | os.PathLike[str] | None = None,
    plan: Any = None,
    pack_dir: str | os.PathLike[str] | None = None,
    new_stack: bool = False,
) -> CheckReport:
    """Run ``stack``'s offline plan (or the given ``plan``) through the policy pack.

    ``new_stack``: plan the stack as a first ``pulumi preview`` of a new stack sees it
    (computed outputs of the resources being created are unknown; see
    :func:`~agentstage.engine.run_plan`). Ignored when ``plan`` is given: its own
    ``new_stack`` says how it was made.

    ``policy_config`` defaults to ``<pack>/config/<stack>.json`` (none: every policy at its
    default enforcement, advisory for agent_guard). Raises
    :class:`~agentstage.engine.EngineError` / :class:`~agentstage.engine.ProgramError` when
    the plan cannot be made, :class:`PolicyConfigError` on a bad policy config and
    :class:`PolicyError` when the pack cannot be run."""
    from agentstage.engine import load_project, load_stack_config, run_plan

    started = time.perf_counter()
    pack = Path(pack_dir) if pack_dir else PACK_DIR
    project = load_project(project_dir)
    stack_config = load_stack_config(project, stack, config_file)
    config_path = Path(policy_config) if policy_config else default_policy_config(stack, pack)
    settings = load_policy_config(config_path) if config_path else {}

    runner = PolicyPackProcess(
        pack, project=project.name, stack=stack, config=stack_config.values, secret_keys=stack_config.secret_keys
    )
    source = display_path(config_path) if config_path else None
    try:
        runner.launch()  # the pack boots while the program runs
        if plan is None:
            _, report = runner.plan_and_check(
                lambda on_resource: run_plan(
                    project_dir,
                    stack,
                    config_file,
                    on_resource=on_resource,
                    stack_config=stack_config,
                    new_stack=new_stack,
                ),
                settings,
                source=source,
                stack_config_path=str(stack_config.path),
            )
        else:
            runner.connect()
            runner.configure(settings, source=source)
            report = runner.check(plan, stack_config_path=str(stack_config.path))
    finally:
        runner.close()
    report.elapsed_s = time.perf_counter() - started
    return report


__all__ += ["PolicyConfigError"]
