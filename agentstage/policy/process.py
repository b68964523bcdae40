"""A policy pack process: started as the Pulumi CLI starts it, watched, stopped.

The CLI's ``pulumi-analyzer-policy-python`` plugin runs the SDK's
``python -m pulumi.policy <engine address> .`` in the pack directory, with the project, stack
and dry-run flag in the environment (``PULUMI_PROJECT``...), and reads the port of the
pack's Analyzer gRPC server from its stdout. :class:`PackProcess` does the same, with the
engine address of a real Engine gRPC service on 127.0.0.1 (:class:`EngineService`) that
records what the pack logs. It knows nothing of the Analyzer protocol: see
:mod:`agentstage.policy.analyzer`.

The stack config, which the CLI puts in the environment too (``PULUMI_CONFIG``), reaches the
pack's runtime through its stdin instead (see :data:`PACK_MAIN`).
"""

from __future__ import annotations

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

__all__ = [
    "BACKGROUND_NICENESS",
    "PACK_MAIN",
    "EngineService",
    "PackProcess",
    "PolicyError",
    "in_background",
    "read_pack_yaml",
]

#: How much lower than the caller's the scheduling priority of the processes a check starts
#: beside the program's (the pack processes, the Analyze relay) is: on two cores, the process
#: that runs the Pulumi program is the one every step waits for, and at the same priority the
#: others took a third of its core (the 100-agent mixed stack registered its resources in
#: 7-9 s instead of 5 s). They still have the rest of the machine, and all of it once the
#: program has finished.
BACKGROUND_NICENESS = 10


def in_background(pid: int) -> None:
    """Lower the priority of process ``pid`` by :data:`BACKGROUND_NICENESS` (not below the
    lowest). Where priorities cannot be set (not a Unix) it runs as it is."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, current + BACKGROUND_NICENESS))
    except (AttributeError, OSError):
        pass


class PolicyError(Failed):
    """The policy pack cannot be used: it is missing, does not start, crashes or misbehaves."""


class EngineService:
    """A minimal Engine gRPC service on 127.0.0.1: it records what the pack logs."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.address = ""
        self._server: Any = None

    def start(self) -> None:
        from concurrent import futures

        import grpc
        from google.protobuf import empty_pb2
        from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

        log = self.log

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

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        engine_pb2_grpc.add_EngineServicer_to_server(Engine(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)
            self._server = None


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
#: ``pulumi.runtime.get_config``, ``pulumi.Config``. With ``AGENTSTAGE_DECODE_ONCE`` set to
#: the path of :mod:`agentstage.policy.decode_once`, that module is loaded (by path: the
#: pack's ``sys.path`` stays the CLI's) and installed first.
PACK_MAIN = (
    "import json, os, runpy, sys\n"
    "import pulumi.runtime\n"
    "for key, value in json.loads(sys.stdin.buffer.read() or b'{}').items():\n"
    "    pulumi.runtime.set_config(key, value)\n"
    "_patch = os.environ.pop('AGENTSTAGE_DECODE_ONCE', '')\n"
    "if _patch:\n"
    "    import importlib.util\n"
    "    _spec = importlib.util.spec_from_file_location('agentstage_decode_once', _patch)\n"
    "    _module = importlib.util.module_from_spec(_spec)\n"
    "    _spec.loader.exec_module(_module)\n"
    "    _module.install()\n"
    "runpy.run_module('pulumi.policy', run_name='__main__', alter_sys=True)\n"
)

DECODE_ONCE = Path(__file__).with_name("decode_once.py")


def _send_config(stream: Any, config: bytes) -> None:
    """Write the stack config to the pack's stdin (on its own thread: a config larger than
    the pipe's buffer waits for the pack to read it)."""
    try:
        stream.write(config)
    except OSError:  # the pack exited first; wait_for_port() says how
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


def read_pack_yaml(pack_dir: Path) -> dict[str, Any]:
    """``PulumiPolicy.yaml`` of a Python pack; PolicyError for anything else."""
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


class PackProcess:
    """One running pack: ``launch()`` starts it (it boots while the caller does other work),
    ``wait_for_port()`` returns the port of its Analyzer server, ``close()`` stops it.

    ``decode_once``: install :mod:`agentstage.policy.decode_once` in the process (the verdicts
    are the same; the pack answers several times faster). False runs the SDK exactly as the
    CLI does."""

    def __init__(
        self,
        pack_dir: str | os.PathLike[str],
        *,
        project: str = "",
        stack: str = "",
        config: Mapping[str, str] | None = None,
        secret_keys: Sequence[str] = (),
        python: str | None = None,
        start_timeout: float = 60.0,
        decode_once: bool = True,
    ) -> None:
        self.pack_dir = Path(pack_dir).resolve()
        self.manifest = read_pack_yaml(self.pack_dir)
        self.project = project
        self.stack = stack
        self.config = dict(config or {})
        self.secret_keys = list(secret_keys)
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.decode_once = decode_once
        self.engine = EngineService()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=60)
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    @property
    def log(self) -> list[str]:
        """What the pack logged through the engine service."""
        return self.engine.log

    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """The pack's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def launch(self) -> None:
        self.engine.start()
        # The stack config goes through the pack's stdin, not PULUMI_CONFIG: see PACK_MAIN.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_CONFIG", "AGENTSTAGE_DECODE_ONCE"))}
        env.update(
            PULUMI_CONFIG_SECRET_KEYS=json.dumps(self.secret_keys),
            PULUMI_PROJECT=self.project,
            PULUMI_STACK=self.stack,
            PULUMI_DRY_RUN="true",
        )
        if self.decode_once:
            env["AGENTSTAGE_DECODE_ONCE"] = str(DECODE_ONCE)
        args = [self.python, "-u", "-c", PACK_MAIN, self.engine.address, "."]
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
            self.engine.stop()
            raise PolicyError(f"cannot start the policy pack with {self.python}: {err.strerror}") from None
        in_background(self._proc.pid)
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

    def tail(self) -> str:
        """The last lines the pack wrote to stderr, indented, for an error message."""
        time.sleep(0.05)  # let the pipe readers catch the last lines
        lines = [line for line in self._stderr if line.strip()]
        return ("\n  " + "\n  ".join(lines[-25:])) if lines else ""

    def wait_for_port(self) -> int:
        """The port the pack printed; PolicyError if it exits, prints something else or
        says nothing within ``start_timeout``."""
        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                line = self._stdout.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PolicyError(
                    f"policy pack {self.pack_dir} did not print its port within {self.start_timeout:g}s{self.tail()}"
                ) from None
            if line is None:
                code = self._proc.wait()
                raise PolicyError(f"policy pack {self.pack_dir} failed to start (exit code {code}){self.tail()}")
            if not line.strip():
                continue
            try:
                return int(line.strip())
            except ValueError:
                raise PolicyError(
                    f"policy pack {self.pack_dir} printed {line.strip()!r} where the Analyzer port was expected"
                ) from None

    def exit_code(self, wait: float) -> int | None:
        """The exit code if the process has ended (waiting up to ``wait`` seconds), else None."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
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
        self.engine.stop()
        for t in self._threads:
            t.join(timeout=1)
        self._threads = []
