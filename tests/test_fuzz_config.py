"""Property: whatever a stack config file holds, the offline engine answers with a plan or a
clean config error (an :class:`~agentstage.errors.AgentstageError` with exit code 2) — never
another exception, and never a program failure on a config that validated.

Mutations of the reference staging stack: any value replaced by another type (dates, bytes,
sets, NaN, huge or control-character strings, nested lists, non-string keys), keys removed or
added (typos, other namespaces), YAML tags and complex keys written into the text, and the
whole file re-encoded (UTF-16, Latin-1, with a BOM).

Profiles: ``fast`` (the default, in ``make test``: 120 examples, seeded) and ``long`` (2,000
random examples, a few minutes): ``AGENTSTAGE_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz_config.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from agentstage.engine import ProgramError, run_plan
from agentstage.errors import EXIT_BAD_INPUT, AgentstageError
from tests.conftest import ROOT, load_stack

settings.register_profile(
    "fast",
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("AGENTSTAGE_FUZZ", "fast"))

BASE = load_stack("staging")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "1.10",
            "no",
            "true",
            "null",
            "[bold]x",
            "a\x1b[2Jb",
            "us-central1",
            "gemini\x00",
            "../../etc",
            "roles/owner",
            "allUsers",
            "0",
            "-1",
            "1e400",
        ]
    ),
    st.builds(lambda n: "x" * n, st.sampled_from([64, 70_000])),
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()), inner, max_size=3),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)


def _set(config: dict, path: tuple, value: Any) -> None:
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _delete(config: dict, path: tuple) -> None:
    node = config
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


def _like(original: Any) -> st.SearchStrategy:
    """A value of the original's type: mutations that often still validate, so the plan and the
    components see unusual but valid specs too."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return st.integers(min_value=-2, max_value=2 * max(original, 1) + 5)
    if isinstance(original, float):
        return st.floats(min_value=0, max_value=2 * original + 1)
    if isinstance(original, str):
        return st.one_of(
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-.:@/_", min_size=1, max_size=20),
            st.just(original + "-2"),
            st.just(original.upper()),
        )
    return values


def _get(config: dict, path: tuple) -> Any:
    node = config
    for part in path:
        node = node[part]
    return node


SCALAR_PATHS = [p for p in PATHS if not isinstance(_get(BASE, p), (dict, list))]

mutation = st.one_of(
    *[st.sampled_from(SCALAR_PATHS).flatmap(lambda p: st.tuples(st.just("set"), st.just(p), _like(_get(BASE, p))))] * 4,
    st.tuples(st.just("set"), st.sampled_from(PATHS), values),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(
        st.just("add"),
        st.sampled_from([p for p in PATHS if len(p) < 4]),
        st.tuples(
            st.one_of(
                st.text(max_size=12),
                st.sampled_from(
                    [
                        "agent-platfrom:budget",
                        "gcp:regoin",
                        "environment",
                        "kubernetes:context",
                        "gcp:zone",
                        "agent-platform:agents",
                        "x:y:z",
                        "stable",
                        "canary_percent",
                    ]
                ),
            ),
            values,
        ),
    ),
)

TEXT_EDITS = [
    lambda t: t.replace("version: 1.4.0", "version: 2026-01-01", 1),
    lambda t: t.replace("memory_schema: '3'", "memory_schema: !!binary Mw==", 1),
    lambda t: t.replace("  gcp:region: us-central1", "  ? [gcp, region]\n  : us-central1", 1),
    lambda t: t.replace("max_instances: 5", "max_instances: &m 5\n        concurrency2: *m", 1),
    lambda t: t.replace("cpu: '1'", "cpu: !!set {a}", 1),
    lambda t: t + "  extra: " + "[" * 200 + "]" * 200 + "\n",
    *[lambda t: t] * 6,  # most examples keep the text as dumped, so more of them reach the plan
]
ENCODINGS = ["utf-8"] * 8 + ["utf-8-sig", "utf-16", "latin-1"]


def _dump(config: dict) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump({"config": config}, buffer)
    return buffer.getvalue()


@given(
    mutations=st.lists(mutation, min_size=1, max_size=2),
    edit=st.sampled_from(TEXT_EDITS),
    encoding=st.sampled_from(ENCODINGS),
)
def test_a_mutated_config_plans_or_fails_cleanly(tmp_path_factory, mutations, edit, encoding):
    config = copy.deepcopy(BASE)
    for kind, path, value in mutations:
        try:
            if kind == "set":
                _set(config, path, value)
            elif kind == "delete":
                _delete(config, path)
            else:
                key, item = value
                target = config
                for part in path:
                    target = target[part]
                if isinstance(target, dict):
                    target[key] = item
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation changed the shape under this path
    try:
        text = edit(_dump(config))
    except Exception:  # noqa: BLE001 - the YAML emitter cannot write this value: not an input
        return
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    path = Path(tmp_path_factory.mktemp("fuzz")) / "s.yaml"
    path.write_bytes(data)
    try:
        run_plan(ROOT, "staging", config_file=path)
        event("planned")
    except ProgramError as err:
        # the program may only fail on the config the platform refused
        assert err.config_issues, f"the program failed on a config that validated: {err}"
        assert err.exit_code == EXIT_BAD_INPUT
        event("refused")
    except AgentstageError as err:
        assert err.exit_code == EXIT_BAD_INPUT, err
        assert err.message
        event("refused")
