"""`pip install agentstage` without extras must run `preview` and `check`.

Tests may not reach PyPI, so instead of installing into a fresh virtualenv the commands run in a
process where every distribution outside the runtime closure of ``[project.dependencies]`` (the
requirements of agentstage without extras, and theirs, recursively) cannot be imported: a
``sitecustomize`` module, inherited by the policy pack's own process, refuses them. A run-time
import of ``jsonschema`` from the dev extra (the bug this guards) fails here exactly as it does
after a plain install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _runtime_closure() -> set[str]:
    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    seen: set[str] = set()
    todo = ["agentstage"]
    while todo:
        name = todo.pop()
        if norm(name) in seen:
            continue
        seen.add(norm(name))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return seen


def _blocked_modules(closure: set[str]) -> list[str]:
    """Top-level modules whose every providing distribution is outside the closure."""
    out = []
    for module, dists in metadata.packages_distributions().items():
        if module.startswith("_") or module in sys.stdlib_module_names:
            continue
        if all(d.lower().replace("_", "-").replace(".", "-") not in closure for d in dists):
            out.append(module)
    return sorted(out)


def test_dev_only_distributions_are_outside_the_runtime_closure():
    closure = _runtime_closure()
    blocked = _blocked_modules(closure)
    # the closure is what pip would install: the SDKs are in it, the test tools are not
    assert {"pulumi", "pulumi-gcp", "pulumi-policy", "jsonschema", "pydantic"} <= closure
    assert {"pytest", "hypothesis", "googleapiclient"} <= set(blocked)
    assert "jsonschema" not in blocked


def test_preview_and_check_run_with_the_runtime_dependencies_only(tmp_path):
    blocked = _blocked_modules(_runtime_closure())
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = set({blocked!r})

        class _NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (not a runtime dependency)", name=name)
                return None

        sys.meta_path.insert(0, _NotInstalled())
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import pytest"], env=env, capture_output=True, text=True)
    assert "not a runtime dependency" in probe.stderr  # the guard is in force
    for command in (["preview", "production"], ["check", "production"], ["check", "staging", "--format", "sarif"]):
        proc = subprocess.run(
            [sys.executable, "-m", "agentstage.cli", *command, "-C", str(ROOT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "not a runtime dependency" not in proc.stderr + proc.stdout, proc.stderr
        assert proc.returncode == 0, proc.stderr
