"""Policy checks: run the agent_guard CrossGuard pack (or any Python pack) on an offline plan.

``run_check(project_dir, stack)`` is the one-call API (``agentstage check`` and the release
gates use it); :class:`PolicyPackProcess` keeps one pack process for many checks. See
``docs/policies.md``.
"""

from agentstage.policy.config import PolicyConfigError, PolicySetting, load_policy_config
from agentstage.policy.report import CheckReport, PolicyInfo, Violation, render_text, to_sarif
from agentstage.policy.runner import (
    PACK_DIR,
    PolicyError,
    PolicyPackProcess,
    default_policy_config,
    display_path,
    run_check,
)

__all__ = [
    "PACK_DIR",
    "CheckReport",
    "PolicyConfigError",
    "PolicyError",
    "PolicyInfo",
    "PolicyPackProcess",
    "PolicySetting",
    "Violation",
    "default_policy_config",
    "display_path",
    "load_policy_config",
    "render_text",
    "run_check",
    "to_sarif",
]
