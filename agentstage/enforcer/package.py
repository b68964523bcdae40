"""The enforcer's deployable source: the files of the function's source archive.

Cloud Run functions build Python source with ``main.py`` at the archive root (where the
framework looks for the entry point) and install ``requirements.txt``
(https://cloud.google.com/run/docs/runtimes/python-dependencies). The archive holds the
enforcer modules and :mod:`agentstage.flags` under their package paths, an empty
``agentstage/__init__.py`` (the real one is empty as well), a two-line ``main.py`` that
re-exports the entry point, and the requirements, so the function imports exactly the code the
tests run. The digest names the archive object, so a change of code is a new object and a
new function build, and the same code never rebuilds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["ENTRY_POINT", "RUNTIME", "REQUIREMENTS", "source_files", "source_digest"]

ENTRY_POINT = "on_budget"
#: A Python runtime Cloud Run functions supports (https://cloud.google.com/functions/docs/runtime-support).
RUNTIME = "python312"
REQUIREMENTS = (
    "functions-framework>=3.5,<4",
    "cloudevents>=1.10,<2",
    "google-cloud-run>=0.10,<1",
    "google-cloud-parametermanager>=0.4,<1",
)
_PACKAGE = Path(__file__).resolve().parent
_MODULES = ("__init__.py", "actions.py", "config.py", "main.py", "notification.py")


def source_files() -> dict[str, str]:
    """Archive path -> file text, in a stable order."""
    files = {
        "main.py": '"""Cloud Run function entry point: the agentstage spend-cap enforcer."""\n\n'
        f"from agentstage.enforcer.main import {ENTRY_POINT}  # noqa: F401\n",
        "requirements.txt": "".join(f"{r}\n" for r in REQUIREMENTS),
        "agentstage/__init__.py": "",
        "agentstage/flags.py": (_PACKAGE.parent / "flags.py").read_text(),
    }
    for module in _MODULES:
        files[f"agentstage/enforcer/{module}"] = (_PACKAGE / module).read_text()
    return files


def source_digest(files: dict[str, str] | None = None) -> str:
    """sha256 over the archive's paths and contents (hex, 64 characters)."""
    h = hashlib.sha256()
    for path, text in sorted((files or source_files()).items()):
        h.update(path.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()
