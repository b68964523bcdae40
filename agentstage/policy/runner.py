"""Run an unmodified CrossGuard policy pack on an offline plan, as the Pulumi CLI does.

The parts, each in its own module:

* :mod:`agentstage.policy.process` starts a pack the way the CLI's
  ``pulumi-analyzer-policy-python`` plugin does (with a real Engine service for its logs),
  watches it and stops it;
* :mod:`agentstage.policy.analyzer` speaks the Analyzer protocol to it;
* :mod:`agentstage.policy.wire` says what the analyzer is told about each resource (the
  CLI's default providers included);
* :mod:`agentstage.policy.streaming` (optional) analyses while the program runs, over one
  or several processes of the pack;
* :mod:`agentstage.policy.relay` makes the streamed ``Analyze`` calls from a separate
  process, so the program's process only writes bytes to a pipe.

:class:`PolicyPackProcess` puts the first three together: one pack process and its client.
:func:`run_check` is the one-call API. Anything unexpected from the pack (it does not start,
exits, raises, answers with a policy it never declared) is a :class:`PolicyError` that says
so, never a pass.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentstage.policy.analyzer import AnalyzerClient, PackInfo, reconcile_settings, violations
from agentstage.policy.config import PolicyConfigError, PolicySetting, load_policy_config
from agentstage.policy.process import PackProcess, PolicyError
from agentstage.policy.report import CheckReport, PolicyInfo, Violation, locate_agents
from agentstage.policy.streaming import AnalysisStream, ExtraPacks

__all__ = ["PACK_DIR", "PolicyError", "PolicyPackProcess", "default_policy_config", "display_path", "run_check"]

#: The agent_guard pack shipped with agentstage.
PACK_DIR = Path(__file__).resolve().parent.parent.parent / "policies" / "agent_guard"


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


class PolicyPackProcess:
    """A running policy pack and an Analyzer client for it.

    ``launch()`` starts the process (so it can boot while the plan runs); ``connect()``
    waits for its port and reads its policies. Use it as a context manager to do both and to
    stop the process at the end. One process can check many plans: call ``configure()``
    and ``check()`` as often as needed. The stack config the pack sees
    (``pulumi.runtime.get_config``) is fixed when it starts, as with the CLI.

    ``decode_once``: see :mod:`agentstage.policy.decode_once` (same verdicts, faster); False
    runs the policy SDK exactly as under the Pulumi CLI."""

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
        decode_once: bool = True,
    ) -> None:
        self.process = PackProcess(
            pack_dir,
            project=project,
            stack=stack,
            config=config,
            secret_keys=secret_keys,
            python=python,
            start_timeout=start_timeout,
            decode_once=decode_once,
        )
        self.rpc_timeout = rpc_timeout
        self.name = str(self.process.pack_dir.name)
        self.version = str(self.process.manifest.get("version") or "")
        self.policies: list[PolicyInfo] = []
        self.settings: dict[str, PolicySetting] = {}
        self.policy_config_source: str | None = None
        self.client: AnalyzerClient | None = None
        self._info: PackInfo | None = None  # what GetAnalyzerInfo said
        self._port: int | None = None
        self._relay: Any = None  # an AnalyzeRelay and this process's lane on it, or None
        self._lane = 0

    # The process's settings, for callers and for starting more processes like this one.
    @property
    def pack_dir(self) -> Path:
        return self.process.pack_dir

    @property
    def project(self) -> str:
        return self.process.project

    @property
    def stack(self) -> str:
        return self.process.stack

    @property
    def config(self) -> dict[str, str]:
        return self.process.config

    @property
    def log(self) -> list[str]:
        return self.process.log

    def like_this(self) -> PolicyPackProcess:
        """Another (unlaunched) process of the same pack with the same stack."""
        p = self.process
        return PolicyPackProcess(
            p.pack_dir,
            project=p.project,
            stack=p.stack,
            config=p.config,
            secret_keys=p.secret_keys,
            python=p.python,
            start_timeout=p.start_timeout,
            rpc_timeout=self.rpc_timeout,
            decode_once=p.decode_once,
        )

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
        self.process.launch()

    def connect(self) -> None:
        """Wait for the pack's port, then ``Handshake``, ``GetAnalyzerInfo`` and
        ``ConfigureStack``."""
        port = self._port = self.process.wait_for_port()
        p = self.process
        self.client = AnalyzerClient(port, self.failure, rpc_timeout=self.rpc_timeout)
        self.client.handshake(p.engine.address, str(p.pack_dir), timeout=p.start_timeout)
        info = self.client.info(default_name=self.name, manifest_version=self.version)
        self.name, self.version, self.policies = info.name, info.version, info.policies
        self._info = info
        self.client.configure_stack(project=p.project, stack=p.stack, config=p.config, secret_keys=p.secret_keys)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self._relay = None
        self.process.close()

    @property
    def relayed(self) -> bool:
        """Whether ``Analyze`` calls go through a relay (see :meth:`relay_through`)."""
        return self._relay is not None

    def relay_through(self, relay: Any) -> None:
        """Send ``Analyze`` calls through ``relay`` (an
        :class:`~agentstage.policy.relay.AnalyzeRelay`) from now on; the other calls stay
        direct."""
        assert self._port is not None, "connect() first"
        if not relay.ready(_RELAY_START):
            return  # it did not start: the calls stay direct, as they work anyway
        self._lane = relay.lane(self._port)
        self._relay = relay

    # --- protocol -------------------------------------------------------------------------

    def failure(self, doing: str, err: Any) -> PolicyError:
        """What a failed call means: the pack exited, crashed, timed out or refused."""
        import grpc

        code = self.process.exit_code(wait=2 if err.code() == grpc.StatusCode.UNAVAILABLE else 0.05)
        tail = self.process.tail
        if code is not None:
            return PolicyError(f"policy pack {self.name} exited (exit code {code}) {doing}{tail()}")
        status = err.code()
        if status == grpc.StatusCode.UNKNOWN:
            return PolicyError(f"policy pack {self.name} crashed {doing}: {err.details()}{tail()}")
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PolicyError(f"policy pack {self.name} did not answer within {self.rpc_timeout:g}s {doing}")
        return PolicyError(f"policy pack {self.name} failed {doing}: {status.name}: {err.details()}{tail()}")

    def configure(self, config: Mapping[str, PolicySetting] | None = None, *, source: str | None = None) -> None:
        """Reconcile ``config`` with the pack's policies and send it (``Configure``)."""
        assert self.client is not None and self._info is not None, "connect() first"
        self.settings = reconcile_settings(self._info, config, source)
        self.policy_config_source = source
        for p in self.policies:
            p.enforcement = self.settings[p.name].enforcement or p.enforcement
            p.config = dict(self.settings[p.name].properties)
        self.client.configure(self.settings)

    def stack_policy_names(self) -> list[str]:
        """The stack policies the current config enables, in the pack's order."""
        return [p.name for p in self.policies if p.kind == "stack" and self.settings[p.name].enforcement != "disabled"]

    def share_stack_policies(self, names: list[str]) -> None:
        """Run only ``names`` of the stack policies in this process from now on (``Configure``
        with the others disabled); resource policies and the report's view of the config stay
        as configured."""
        assert self.client is not None, "connect() first"
        others = set(self.stack_policy_names()) - set(names)
        self.client.configure(
            {
                name: PolicySetting("disabled", setting.properties) if name in others else setting
                for name, setting in self.settings.items()
            }
        )

    def send_analyze(self, request: Any) -> Any:
        """``Analyze`` one resource: the call's future."""
        assert self.client is not None, "connect() first"
        if self._relay is not None:
            return self._relay.analyze(self._lane, request)
        return self.client.analyze(request)

    def send_analyze_stack(self, request: Any) -> Any:
        """``AnalyzeStack``: the call's future."""
        assert self.client is not None, "connect() first"
        return self.client.analyze_stack(request)

    def violations(self, response: Any, urn: str | None, by_urn: Mapping[str, Any]) -> list[Violation]:
        return violations(self.name, self.policies, response, urn, by_urn)

    # --- checks ---------------------------------------------------------------------------

    def analyze(self, plan: Any) -> tuple[list[Violation], int, float]:
        """Run every resource of ``plan`` through ``Analyze`` and the whole stack through
        ``AnalyzeStack``: (violations in report order, resources analysed, seconds)."""
        if not self.settings:
            self.configure({})
        stream = AnalysisStream(self, plan.project, plan.stack, self.config)
        stream.open()
        for r in plan.resources:
            stream.feed(r)
        return stream.finish(plan)

    def check(self, plan: Any, *, stack_config_path: str | None = None) -> CheckReport:
        """Analyse ``plan`` and build the report."""
        started = time.perf_counter()
        found, count, seconds = self.analyze(plan)
        report = self._report(plan, found, count, seconds, stack_config_path)
        report.elapsed_s = time.perf_counter() - started
        return report

    def plan_and_check(
        self,
        make_plan: Any,
        settings: Mapping[str, PolicySetting] | None = None,
        *,
        source: str | None = None,
        stack_config_path: str | None = None,
        large_plan: int | None = None,
        extra_processes: int = 1,
    ) -> tuple[Any, CheckReport]:
        """Make the plan and analyse it at the same time: ``make_plan(on_resource)`` runs
        the program and calls ``on_resource`` with each resource as it is registered; each
        goes to ``Analyze`` at once (after ``connect``/``configure``, done meanwhile on
        another thread), so the pack works on its own core while the program still runs.
        From ``large_plan`` resources on (default
        :data:`~agentstage.policy.streaming.LARGE_PLAN`), ``extra_processes`` more
        processes of the pack share the work, ``AnalyzeStack`` included. Returns
        (plan, report)."""
        started = time.perf_counter()
        relay = None
        extras = ExtraPacks(
            self.like_this,
            settings or {},
            source,
            count=extra_processes,
            prepare=lambda pack: relay is not None and pack.relay_through(relay),
        )
        stream = AnalysisStream(
            self, self.project, self.stack, self.config, on_large=extras.start, large_plan=large_plan, use_wire=True
        )
        errors: list[BaseException] = []

        def connect() -> None:
            try:
                self.connect()
                self.configure(settings or {}, source=source)
                if relay is not None:
                    self.relay_through(relay)
                stream.open()
            except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
                errors.append(err)
                stream.abandon()

        connector = threading.Thread(target=connect, name="policy-pack-connect", daemon=True)
        # As the engine does while the program runs: the plan's objects make the heap large,
        # and the collector's full passes over it would slow the analysis as much.
        collecting = gc.isenabled()
        gc.disable()
        try:
            relay = _start_relay(self.rpc_timeout)  # the Analyze calls' process (None: direct calls)
            connector.start()
            try:
                plan = make_plan(stream.feed)
            finally:
                connector.join()
            if errors:
                raise errors[0]
            extras.wait()
            found, count, seconds = stream.finish(plan)
        finally:
            extras.close()
            self._relay = None
            if relay is not None:
                relay.close()
            if collecting:
                gc.enable()
        report = self._report(plan, found, count, seconds, stack_config_path)
        report.elapsed_s = time.perf_counter() - started
        return plan, report

    def _report(
        self, plan: Any, found: list[Violation], count: int, seconds: float, stack_config_path: str | None
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
            violations=found,
            resources=count,
            analysis_s=seconds,
            pack_log=list(self.log),
        )
        report.locator = lambda rep: locate_agents(rep, plan)
        return report


# --- the one-call API -------------------------------------------------------------------


#: Seconds a pack waits for the relay to say it is ready before its calls stay direct.
_RELAY_START = 10.0


def _start_relay(rpc_timeout: float) -> Any:
    """An :class:`~agentstage.policy.relay.AnalyzeRelay`, launched; None if it cannot start
    (the calls are then made directly, as they would be anyway)."""
    from agentstage.policy.relay import AnalyzeRelay

    relay = AnalyzeRelay(rpc_timeout=rpc_timeout)
    try:
        relay.start()
    except Exception:  # noqa: BLE001 - e.g. no interpreter to start: the calls stay direct
        relay.close()
        return None
    return relay


def run_check(
    project_dir: str | os.PathLike[str],
    stack: str,
    *,
    config_file: str | os.PathLike[str] | None = None,
    policy_config: str | os.PathLike[str] | None = None,
    plan: Any = None,
    pack_dir: str | os.PathLike[str] | None = None,
    new_stack: bool = False,
    on_resource: Any = None,
    on_planned: Any = None,
) -> CheckReport:
    """Run ``stack``'s offline plan (or the given ``plan``) through the policy pack.

    ``on_resource(record)`` is also called with each resource as the program registers it,
    and ``on_planned()`` once the program has finished (for a progress display).

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

            def make_plan(feed: Any) -> Any:
                def each(record: Any) -> None:
                    feed(record)
                    on_resource(record)

                made = run_plan(
                    project_dir,
                    stack,
                    config_file,
                    on_resource=feed if on_resource is None else each,
                    stack_config=stack_config,
                    new_stack=new_stack,
                )
                if on_planned is not None:
                    on_planned()
                return made

            _, report = runner.plan_and_check(
                make_plan,
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
