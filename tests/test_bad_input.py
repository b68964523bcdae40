"""Every bad input gets exit 2 (or its documented code) and one clear message naming the file
or key and what is allowed — never a traceback — through the one error boundary."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from tests.conftest import ROOT, load_stack, write_stack

runner = CliRunner()
STAGING = load_stack("staging")


def invoke(*args: str):
    result = runner.invoke(app, list(args), terminal_width=400)
    # the boundary never lets an exception out of a command
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def one_line(result) -> str:
    return " ".join(result.output.split())


def staging_with(tmp_path: Path, mutate) -> Path:
    config = copy.deepcopy(STAGING)
    mutate(config)
    return write_stack(tmp_path / "s.yaml", config)


def bot(config):
    return config["agent-platform:agents"]["support-bot"]


def preview_file(path: Path):
    return invoke("preview", "staging", "-C", str(ROOT), "--config-file", str(path))


# --- YAML types, shapes, limits ----------------------------------------------------------------

STAGING_TEXT = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text()


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "version: 1.4.0",
            "version: 2026-01-01",
            "config.agent-platform:agents.support-bot.release.version (line 13): 2026-01-01 is read as a date; quote it "
            '("2026-01-01") or write the value you mean',
        ),
        (
            "model: gemini-2.5-flash",
            "model: !!binary Z2VtaW5p",
            "config.agent-platform:agents.support-bot.release.model (line 15): Z2VtaW5p is tagged !!binary; config values "
            "are text: write the value as a string",
        ),
        (
            "      invokers:\n        - serviceAccount:frontend",
            "      invokers: !!set {a, b}\n      x:\n        - serviceAccount:frontend",
            "config.agent-platform:agents.support-bot.invokers (line 35): is a !!set; write a list (- item) or a mapping",
        ),
        (
            "        web_search_tool: true",
            "        true: true",
            "config.agent-platform:agents.support-bot.features.true (line 45): the key true is read as a boolean, not a "
            'string; quote it ("true")',
        ),
        (
            '        LOG_SAMPLE_RATE: "1.0"',
            '        null: "1.0"',
            "config.agent-platform:agents.support-bot.env.null (line 43): the key null is read as a null value, not a "
            'string; quote it ("null")',
        ),
        (
            "  gcp:region: us-central1",
            "  ? [gcp, region]\n  : us-central1",
            "config (line 4): a key is a list; keys must be plain strings",
        ),
        (
            "  gcp:region: us-central1",
            "  gcp:region: us-central1\n  gcp:region: us-east1",
            "config.gcp:region (line 5): the key gcp:region appears twice in one mapping (also line 4); keep one",
        ),
        (
            "model: gemini-2.5-flash",
            "model: !vertex gemini",
            "config.agent-platform:agents.support-bot.release.model (line 15): gemini has the tag !vertex; only plain YAML "
            "values (strings, numbers, true/false, null, lists and mappings) are config",
        ),
    ],
)
def test_yaml_that_is_not_plain_config_data_names_the_key_and_line(tmp_path, old, new, message):
    assert old in STAGING_TEXT
    path = tmp_path / "s.yaml"
    path.write_text(STAGING_TEXT.replace(old, new, 1))
    result = preview_file(path)
    assert result.exit_code == 2
    assert one_line(result) == f"error: config file {path}: {message}"


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "s.yaml"
    path.write_text("config:\n  gcp:project: acme-agents-staging\n" + "\n".join("  " + x for x in lines) + "\n")
    result = preview_file(path)
    assert result.exit_code == 2
    assert one_line(result) == (
        f"error: config file {path}: expands to 1,234,567,913 values once its aliases (*name) "
        "are followed, more than the 2,000,000 agentstage reads; write the values out or use "
        "fewer aliases"
    )


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("config:\n  x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    result = preview_file(path)
    assert result.exit_code == 2
    assert one_line(result) == f"error: config file {path}: nested more than 64 levels deep"


@pytest.mark.parametrize(
    "text,message",
    [
        ("- a\n- b\n", "expected a mapping with a config: key, not a list"),
        ("just text\n", "expected a mapping with a config: key, not the string 'just text'"),
        (
            "config: [a, b]\n",
            "config: is a list; it must be a mapping of config keys to values (gcp:project: ..., "
            "<project>:agents: ...)",
        ),
        (
            "config: hello\n",
            "config: is the string 'hello'; it must be a mapping of config keys to values "
            "(gcp:project: ..., <project>:agents: ...)",
        ),
        (
            "config: 3\n",
            "config: is 3; it must be a mapping of config keys to values (gcp:project: ..., <project>:agents: ...)",
        ),
        ("", "is empty; a stack config is a mapping with a config: key"),
    ],
)
def test_stack_files_of_the_wrong_shape(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = preview_file(path)
    assert result.exit_code == 2
    sep = " " if message.startswith("is empty") else ": "
    assert one_line(result) == f"error: {path}{sep}{message}"


@pytest.mark.parametrize(
    "manifest,message",
    [
        ("- name: x\n", "expected a mapping with name:, runtime: and main: keys, not a list"),
        ("demo\n", "expected a mapping with name:, runtime: and main: keys, not the string 'demo'"),
        (
            "name: demo\nruntime: python\nconfig: [a]\n",
            "config: is a list; give a mapping of config keys to their declarations (type:, default:...) or values",
        ),
        ("name: [demo]\nruntime: python\n", "name: is a list; give the project's name as a string"),
    ],
)
def test_pulumi_yaml_of_the_wrong_shape(tmp_path, manifest, message):
    (tmp_path / "Pulumi.yaml").write_text(manifest)
    (tmp_path / "__main__.py").write_text("")
    result = invoke("preview", "dev", "-C", str(tmp_path))
    assert result.exit_code == 2
    assert one_line(result) == f"error: {tmp_path / 'Pulumi.yaml'}: {message}"


# --- encodings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding,message",
    [
        ("utf-16", "is UTF-16 text; save it as UTF-8"),
        ("latin-1", "is not UTF-8 text: byte 0xe9 at offset 2 cannot be decoded; save it as UTF-8"),
    ],
)
def test_stack_files_not_in_utf8(tmp_path, encoding, message):
    path = tmp_path / "s.yaml"
    path.write_bytes("# é\n".encode(encoding) + STAGING_TEXT.encode(encoding))
    result = preview_file(path)
    assert result.exit_code == 2
    assert one_line(result) == f"error: config file {path} {message}"


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + STAGING_TEXT.encode())
    assert preview_file(path).exit_code == 0


def test_policy_config_eval_report_and_locust_csv_not_in_utf8(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_bytes('{"all": "advisory"}'.encode("utf-16"))
    result = invoke("check", "staging", "-C", str(ROOT), "--policy-config", str(policy))
    assert result.exit_code == 2
    assert one_line(result) == f"error: policy config {policy} is UTF-16 text; save it as UTF-8"

    from agentstage.release.evidence import EvidenceError, read_eval, read_load_tests

    report = tmp_path / "eval.json"
    report.write_bytes('{"metrics": {"s": 0.9}, "note": "café"}'.encode("latin-1"))
    with pytest.raises(EvidenceError) as err:
        read_eval(str(report))
    assert str(err.value) == (
        f"evaluation report {report} is not UTF-8 text: byte 0xe9 at offset 36 cannot be decoded; save it as UTF-8"
    )
    stats = tmp_path / "run_stats.csv"
    stats.write_bytes("Type,Name\n".encode("utf-16"))
    with pytest.raises(EvidenceError) as err:
        read_load_tests(str(stats))
    assert str(err.value) == f"load test {stats} is UTF-16 text; save it as UTF-8"


# --- values that were coerced or ignored ------------------------------------------------------


@pytest.mark.parametrize(
    "mutate,issue",
    [
        (
            lambda c: bot(c)["release"].__setitem__("version", 1.1),
            "agent-platform:agents.support-bot.release.version: 1.1 is a number, not a version: YAML reads an unquoted "
            '1.10 as the number 1.1; quote the version, e.g. version: "1.10"',
        ),
        (
            lambda c: bot(c)["scaling"].__setitem__("max_instances", True),
            "agent-platform:agents.support-bot.scaling.max_instances: true is not a whole number",
        ),
        (
            lambda c: c["agent-platform:alerts"].__setitem__("enabled", "no"),
            'agent-platform:alerts.enabled: "no" is not true or false',
        ),
        (
            lambda c: c.__setitem__("agent-platfrom:budget", {"billing_account": "x"}),
            "agent-platfrom:budget: agent-platfrom: is not a config namespace this stack reads (agent-platform, gcp, "
            "pulumi, kubernetes); did you mean agent-platform:budget?",
        ),
        (
            lambda c: c.__setitem__("gcp:regoin", "us-east1"),
            "gcp:regoin: is not a config key of the Google provider (pulumi-gcp); did you mean gcp:region?",
        ),
        (
            lambda c: c.__setitem__("gcp:region", "mars-north1"),
            'gcp:region: "mars-north1" is not a region where Cloud Run runs services '
            "(https://cloud.google.com/run/docs/locations); use one of "
            + ", ".join(sorted(__import__("components.spec", fromlist=["CLOUD_RUN_REGIONS"]).CLOUD_RUN_REGIONS)),
        ),
        (
            lambda c: c.__setitem__("gcp:region", "us-centrl1"),
            'gcp:region: "us-centrl1" is not a region where Cloud Run runs services '
            "(https://cloud.google.com/run/docs/locations); did you mean us-central1?",
        ),
        (
            lambda c: bot(c)["release"].__setitem__("model", "gemini\x00"),
            "agent-platform:agents.support-bot.release.model: \"gemini\\u0000\" holds the control character '\\x00'; "
            "values are plain text",
        ),
        (
            lambda c: bot(c)["release"].__setitem__("model", "g" * 1_000_000),
            'agent-platform:agents.support-bot.release.model: "<1,000,000 characters>" is 1,000,000 characters long; the '
            "longest value agentstage accepts is 65,536",
        ),
        (
            lambda c: bot(c)["rollout"].__setitem__("canary_percent", 5),
            "agent-platform:agents.support-bot.rollout.canary_percent: 5 is set but stable is not; canary_percent splits "
            "traffic between release and stable: remove it, or set stable",
        ),
        (
            lambda c: c.__setitem__("agent-platform:gates", {"agents": {"nope": {"task_success": 0.8}}}),
            'agent-platform:gates.agents.nope: "nope" is not an agent of this stack (agents: research-agent, '
            "support-bot); a gate for an agent that is not here gates nothing: fix the name or remove it",
        ),
    ],
)
def test_values_are_not_coerced_or_ignored(tmp_path, mutate, issue):
    result = preview_file(staging_with(tmp_path, mutate))
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: invalid stack config for stack 'staging':", f"  {issue}"]


def test_a_bare_key_may_not_shadow_its_namespaced_twin(tmp_path):
    path = staging_with(tmp_path, lambda c: c.__setitem__("environment", "production"))
    result = preview_file(path)
    assert result.exit_code == 2
    assert one_line(result) == (
        f"error: {path}: environment and agent-platform:environment are the same key "
        "(agent-platform:environment: a key without a namespace is in the project's); keep "
        "one"
    )


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["[bold]x", "../../x", "a/b", "\x1b[31mred"])
def test_stack_names_that_are_not_names(stack):
    result = invoke("preview", stack, "-C", str(ROOT))
    assert result.exit_code == 2
    shown = repr(stack).replace("\x1b", "\\x1b")
    assert result.output == (
        f"error: stack name {shown} is not a Pulumi stack name; use letters, digits, '-', '_' "
        "or '.' (at most 100 characters)\n"
    )


def test_markup_and_escapes_in_a_path_are_printed_as_text(tmp_path):
    folder = tmp_path / "[bold]team\x1b[2J"
    result = invoke("preview", "staging", "-C", str(folder))
    assert result.exit_code == 2
    shown = str(folder).replace("\x1b", "\\x1b")
    assert result.output == f"error: project directory {shown} does not exist\n"


def test_escapes_in_a_config_key_do_not_reach_the_terminal(tmp_path):
    path = staging_with(tmp_path, lambda c: bot(c)["env"].__setitem__("X\x1b[2J", "1"))
    result = preview_file(path)
    assert result.exit_code == 2
    assert "\x1b" not in result.output
    assert "\\x1b[2J" in result.output


@pytest.mark.parametrize(
    "target,message",
    [
        ("dir", "--output {p}: is a directory; give a file path, e.g. {p}/check.sarif"),
        ("missing/report.sarif", "--output {p}: the folder {parent} does not exist"),
    ],
)
def test_check_output_that_cannot_be_written_is_bad_input(tmp_path, target, message):
    out = tmp_path / target
    if target == "dir":
        out.mkdir()
    result = invoke("check", "staging", "-C", str(ROOT), "--output", str(out))
    assert result.exit_code == 2
    assert one_line(result) == "error: " + message.format(p=out, parent=out.parent)


def test_check_output_to_a_full_device_is_bad_input():
    if not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full")
    result = invoke("check", "staging", "-C", str(ROOT), "--format", "json", "--output", "/dev/full")
    assert result.exit_code == 2
    assert one_line(result).startswith("error: --output /dev/full: cannot write the report: No space left on device")


@pytest.mark.parametrize("kind", ["devnull", "dir"])
def test_config_file_that_is_not_a_stack_file(tmp_path, kind):
    path = Path("/dev/null") if kind == "devnull" else tmp_path
    result = invoke("preview", "staging", "-C", str(ROOT), "--config-file", str(path))
    assert result.exit_code == 2
    expected = (
        f"error: {path} is empty; a stack config is a mapping with a config: key"
        if kind == "devnull"
        else f"error: config file {path} is a directory, not a file"
    )
    assert one_line(result) == expected


def test_a_program_that_calls_sys_exit_is_reported(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "__main__.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    result = invoke("preview", "dev", "-C", str(tmp_path))
    assert result.exit_code == 1
    assert one_line(result) == (
        "error: the program exited with sys.exit(3) before it finished; nothing was planned after that point"
    )


def test_json_mode_prints_the_error_as_json_on_stdout(tmp_path):
    runner_split = CliRunner()
    path = staging_with(tmp_path, lambda c: bot(c)["scaling"].__setitem__("max_instances", True))
    result = runner_split.invoke(app, ["preview", "staging", "-C", str(ROOT), "--config-file", str(path), "--json"])
    assert result.exit_code == 2
    document = json.loads(result.stdout[result.stdout.index("{") :])
    assert document == {
        "error": {
            "kind": "bad_input",
            "message": "invalid stack config for stack 'staging':",
            "exit_code": 2,
            "details": ["agent-platform:agents.support-bot.scaling.max_instances: true is not a whole number"],
        }
    }


def test_an_unexpected_exception_is_one_line_and_a_trace_file(monkeypatch, tmp_path):
    import agentstage.engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(agentstage.engine, "run_plan", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    result = invoke("preview", "staging", "-C", str(ROOT), "--json")
    assert result.exit_code == 70
    traces = list(tmp_path.glob("agentstage-crash-*.txt"))
    assert len(traces) == 1 and "ZeroDivisionError: boom" in traces[0].read_text()
    assert (
        f"error: internal error (ZeroDivisionError: boom); this is a bug in agentstage, please report it; the "
        f"full trace is in {traces[0]}"
    ) in one_line(result)
    document = json.loads(result.stdout[result.stdout.index("{") :])
    assert document["error"] == {
        "kind": "bug",
        "message": "ZeroDivisionError: boom",
        "exit_code": 70,
        "trace_file": str(traces[0]),
    }


# --- policy config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,lines",
    [
        (
            '{"all": {"enforcementLevel": "advisory", "max_error_rate": 0.5}}',
            [
                'error: policy config {p}: "all" sets properties, which the policy config does not apply to every policy '
                "(only an enforcement level):",
                "  all: max_error_rate: move it under the policy that declares it (no policy of this pack declares it)",
            ],
        ),
        (
            '{"all": "advisory", "all": "mandatory"}',
            ['error: policy config {p}: the key "all" appears twice in one object; keep one'],
        ),
        (
            '{"all": "mandatroy"}',
            [
                "error: policy config {p}: parsing enforcement level for 'all': 'mandatroy' is not a valid enforcement level; "
                "allowed: advisory, mandatory, remediate, disabled"
            ],
        ),
    ],
)
def test_policy_config_mistakes(tmp_path, content, lines):
    path = tmp_path / "policy.json"
    path.write_text(content)
    result = invoke("check", "staging", "-C", str(ROOT), "--policy-config", str(path))
    assert result.exit_code == 2
    assert result.output.splitlines() == [line.format(p=path) for line in lines]


def test_unknown_policy_names_are_named(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text('{"no-such-policy": "mandatory"}')
    result = invoke("check", "staging", "-C", str(ROOT), "--policy-config", str(path))
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == f"error: policy config {path} names policies the pack does not have:"
    assert result.output.splitlines()[1].startswith("  no-such-policy: unknown policy; policies: ")


# --- ledger files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "releases.json",
            "[1, 2]",
            "release ledger {p}: expected an object of agent -> version -> record; restore the "
            "file from version control",
        ),
        (
            "releases.json",
            '{"support-bot": {"1.4.0": 3}}',
            "release ledger {p}: support-bot.1.4.0: expected a record "
            "with a digest; restore the file from version control",
        ),
        ("releases.json", b"\xff\xfe{\x00}\x00", "release ledger {p} is UTF-16 text; save it as UTF-8"),
        (
            "decisions.jsonl",
            '{"agent": "a"}\nnot json\n{"agent": "b"}\n',
            "decision log {p}: line 2 is not valid JSON (Expecting value); restore the file from version control",
        ),
        (
            "decisions.jsonl",
            '[1]\n{"agent": "b"}\n',
            "decision log {p}: line 1 is not a JSON object; restore the file from version control",
        ),
    ],
)
def test_corrupt_ledger_files_are_named(tmp_path, name, content, message):
    from agentstage.release.ledger import Ledger, LedgerError

    folder = tmp_path / ".agentstage" / "staging"
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    ledger = Ledger(tmp_path, "staging")
    with pytest.raises(LedgerError) as err:
        ledger.releases() if name == "releases.json" else ledger.decisions()
    assert str(err.value) == message.format(p=path)


def test_a_torn_last_decision_line_is_skipped(tmp_path):
    from agentstage.release.ledger import Ledger

    folder = tmp_path / ".agentstage" / "staging"
    folder.mkdir(parents=True)
    (folder / "decisions.jsonl").write_text('{"agent": "a"}\n{"agent": "b", "ver')
    assert Ledger(tmp_path, "staging").decisions() == [{"agent": "a"}]


def test_yaml_rules_hold_for_the_release_flow_too(tmp_path):
    from agentstage.release.stackfile import StackFile, StackFileError

    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text(STAGING_TEXT.replace("version: 1.4.0", "version: 2026-01-01", 1))
    with pytest.raises(StackFileError) as err:
        StackFile.load(path)
    assert str(err.value) == (
        f"stack config {path}: config.agent-platform:agents.support-bot.release.version "
        '(line 13): 2026-01-01 is read as a date; quote it ("2026-01-01") or write the value '
        "you mean"
    )


def test_a_config_too_large_for_the_pulumi_cli_is_checked_with_a_warning(tmp_path):
    path = staging_with(tmp_path, lambda c: bot(c)["env"].update({f"PROMPT_{i}": "p" * 30_000 for i in range(5)}))
    result = invoke("check", "staging", "-C", str(ROOT), "--config-file", str(path))
    assert result.exit_code == 0, result.output
    assert (
        "warning: the stack config is 149 KiB as the JSON the Pulumi CLI passes to a Python program and policy "
        "pack in one environment variable (PULUMI_CONFIG); Linux refuses one larger than 128 KiB, so `pulumi up` "
        'and `pulumi preview --policy-pack` of this stack would fail with "argument list too long" '
        "(pulumi/pulumi#20402): split the agents over several stacks"
    ) in one_line(result)


def test_a_huge_bad_value_is_quoted_in_part(tmp_path):
    path = staging_with(tmp_path, lambda c: c.__setitem__("agent-platform:labels", [["x" * 100] * 100] * 100))
    result = preview_file(path)
    assert result.exit_code == 2
    assert len(result.output) < 600
    assert result.output.splitlines()[1].endswith("... (1,040,200 characters) is not a mapping")


def test_markup_in_an_agent_name_is_shown_as_written(tmp_path):
    def rename(c):
        c["agent-platform:agents"]["[bold]x"] = c["agent-platform:agents"].pop("support-bot")

    result = preview_file(staging_with(tmp_path, rename))
    assert result.exit_code == 2
    assert result.output.splitlines()[1].startswith('  agent-platform:agents.[bold]x: "[bold]x" is not an agent name')


def test_pulumi_yaml_and_metrics_files_not_in_utf8(tmp_path):
    (tmp_path / "Pulumi.yaml").write_bytes("name: démo\nruntime: python\n".encode("latin-1"))
    result = invoke("preview", "dev", "-C", str(tmp_path))
    assert result.exit_code == 2
    assert one_line(result) == (
        f"error: project file {tmp_path / 'Pulumi.yaml'} is not UTF-8 text: byte 0xe9 at "
        "offset 7 cannot be decoded; save it as UTF-8"
    )

    from agentstage.release.metrics import FileSource, MetricsError

    metrics = tmp_path / "m.json"
    metrics.write_bytes('{"revisions": {}}'.encode("utf-16"))
    with pytest.raises(MetricsError) as err:
        FileSource(metrics)
    assert str(err.value) == f"metrics file {metrics} is UTF-16 text; save it as UTF-8"
