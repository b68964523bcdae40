"""The docs' snippets are run, so a page cannot show code that no longer works.

Conventions (an HTML comment right before a fenced block; invisible when the page renders):

- ``<!-- snippet: mock -->`` before a ```` ```python ```` block: a whole Pulumi program. It runs
  as the ``__main__.py`` of a scratch project (stack ``dev``, config ``gcp:project:
  acme-agents-dev``, ``gcp:region: us-central1``) under the offline engine, Pulumi's mock
  runtime, exactly as ``agentstage preview`` runs a program. It must be followed by at least
  one expectation: ``<!-- resources -->`` before a ```` ```text ```` block of ``<count> <type
  token>`` lines (the custom resources the program registers, all of them), and/or
  ``<!-- outputs -->`` before a ```` ```json ```` block (the stack outputs, all of them).
- ``<!-- run -->`` before a ```` ```sh ```` block: shell commands. All the run blocks of one page
  are one bash session (``set -e``, a ``cd`` or ``. .venv/bin/activate`` carries to the next
  block), run in a copy of the repository as a fresh clone has it, with the project's
  virtualenv already set up. ``<!-- run: exit=N -->`` marks a block of one command that must
  exit with ``N`` (``rollout`` exits 3 when it rolls back). ``<!-- prints -->`` before a
  ```` ```text ```` block: each of its lines must appear in what the session printed.

Only the pages written to be run are scanned: docs/components/*.md, docs/walkthrough.md and
docs/operations.md. The links of the guides are checked too, anchors into config.md included.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
COMPONENT_PAGES = sorted((DOCS / "components").glob("*.md"))
RUN_PAGES = [DOCS / "walkthrough.md", DOCS / "operations.md"]
GUIDES = [DOCS / "README.md", DOCS / "contributing.md", *RUN_PAGES, *COMPONENT_PAGES]

#: a marker comment and the fenced block right after it
BLOCK = re.compile(r"<!--\s*(?P<marker>[^>]*?)\s*-->\s*\n```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)
SNIPPET_STACK = "config:\n  gcp:project: acme-agents-dev\n  gcp:region: us-central1\n"


@dataclass
class Block:
    page: Path
    marker: str
    lang: str
    body: str
    line: int

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(page, m["marker"], m["lang"], m["body"], text.count("\n", 0, m.start("body")) + 1)
        for m in BLOCK.finditer(text)
    ]


def mock_snippets() -> list[tuple[Block, list[Block]]]:
    """Each mock snippet with the expectation blocks that follow it."""
    found = []
    for page in [*COMPONENT_PAGES, *(p for p in RUN_PAGES if p.exists())]:
        page_blocks = blocks(page)
        for i, block in enumerate(page_blocks):
            if block.marker != "snippet: mock":
                continue
            expects = []
            for after in page_blocks[i + 1 :]:
                if after.marker not in ("resources", "outputs"):
                    break
                expects.append(after)
            found.append((block, expects))
    return found


SNIPPETS = mock_snippets()


def test_every_component_page_has_a_snippet():
    pages = {block.page for block, _ in SNIPPETS}
    assert COMPONENT_PAGES, "docs/components/ has no pages"
    assert not [p.name for p in COMPONENT_PAGES if p not in pages]


@pytest.mark.parametrize("block,expects", SNIPPETS, ids=[b.where for b, _ in SNIPPETS])
def test_mock_snippet(block: Block, expects: list[Block], tmp_path: Path):
    from agentstage.engine import run_plan

    assert block.lang == "python", f"{block.where}: a mock snippet is a python block"
    assert expects, f"{block.where}: follow the snippet with a <!-- resources --> or <!-- outputs --> block"
    (tmp_path / "Pulumi.yaml").write_text("name: docs-snippet\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text(SNIPPET_STACK)
    (tmp_path / "__main__.py").write_text(block.body)
    plan = run_plan(tmp_path, "dev")
    for expect in expects:
        if expect.marker == "resources":
            want = Counter()
            for line in expect.body.splitlines():
                if line.strip():
                    count, type_ = line.split()
                    want[type_] += int(count)
            got = Counter(r.type for r in plan.resources if r.custom)
            assert got == want, f"{expect.where}: the program registers {dict(sorted(got.items()))}"
        else:
            assert plan.outputs == json.loads(expect.body), (
                f"{expect.where}: the stack outputs are\n{json.dumps(plan.outputs, indent=2)}"
            )


def fresh_clone(dest: Path) -> Path:
    """The repository as a clone has it (tracked files and new ones not ignored), with the
    virtualenv ``make`` would have built: its bin/ is this checkout's, and its stamp is newer
    than pyproject.toml so ``make`` does not reinstall."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        src = ROOT / raw.decode()
        if src.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    venv = dest / ".venv"
    venv.mkdir()
    for entry in (ROOT / ".venv").iterdir():  # bin, lib, pyvenv.cfg...: python finds its venv from its path
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    dry = subprocess.run(["make", "-n", "preview"], cwd=dest, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in dry, "make would reinstall the virtualenv in the copy: not run"
    return dest


def session(page: Path) -> tuple[str, list[str]]:
    """The page's run blocks as one bash script, and the lines it must print."""
    script = ["set -eo pipefail"]
    prints: list[str] = []
    for block in blocks(page):
        if block.marker == "prints":
            prints += [line.strip() for line in block.body.splitlines() if line.strip()]
            continue
        m = re.fullmatch(r"run(?::\s*exit=(\d+))?", block.marker)
        if not m:
            continue
        assert block.lang == "sh", f"{block.where}: a run block is a sh block"
        script.append(f'echo "### {block.where} at $SECONDS s"')
        if m[1] is None:
            script.append(block.body)
        else:
            command = block.body.strip()
            script.append(
                f"set +e\n{command}\nrc=$?\nset -e\n"
                f'[ "$rc" -eq {m[1]} ] || {{ echo "{block.where}: exit $rc, not {m[1]}" >&2; exit 1; }}'
            )
    return "\n".join(script) + "\n", prints


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.name for p in RUN_PAGES])
def test_run_blocks(page: Path, tmp_path: Path):
    script, prints = session(page)
    assert script.count("### ") >= 3, f"{page.name}: expected run blocks"
    clone = fresh_clone(tmp_path / "agentstage")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST", "COV_"))}
    env.update(COLUMNS="200", TERM="dumb", NO_COLOR="1", PATH=f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}")
    # its own process group, so what a page starts in the background ends with it
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    done = proc
    assert done.returncode == 0, f"{page.name}: the walkthrough failed\n{out[-6000:]}"
    flat = " ".join(out.split())
    missing = [line for line in prints if " ".join(line.split()) not in flat]
    assert not missing, f"{page.name}: not printed: {missing}\n{out[-6000:]}"


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def anchors(page: Path) -> set[str]:
    """The ids a page defines: explicit ``<a id>`` and GitHub's heading slugs."""
    text = page.read_text()
    ids = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+\s+(.*)$", text, re.M):
        ids.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return ids


@pytest.mark.parametrize("page", GUIDES, ids=[str(p.relative_to(DOCS)) for p in GUIDES])
def test_links_resolve(page: Path):
    broken = []
    for link in links(page):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_index_lists_every_page():
    listed = {(DOCS / link.partition("#")[0]).resolve() for link in links(DOCS / "README.md")}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "README.md"}
    assert not sorted(str(p.relative_to(DOCS)) for p in pages - listed), "docs/README.md does not list these"


def test_readme_links_the_docs_and_keeps_its_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/README.md)" in readme
    assert "make preview" in readme and "make test" in readme


def test_a_broken_snippet_fails(tmp_path: Path):
    """The runner reports a snippet whose expectation no longer holds (the test is not vacuous)."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- snippet: mock -->\n```python\nimport pulumi\npulumi.export('x', 1)\n```\n\n"
        '<!-- outputs -->\n```json\n{"x": 2}\n```\n'
    )
    [(block, expects)] = [(b, [e for e in blocks(page) if e.marker == "outputs"]) for b in blocks(page)[:1]]
    (tmp_path / "run").mkdir()
    with pytest.raises(AssertionError, match="the stack outputs are"):
        test_mock_snippet(block, expects, tmp_path / "run")


@pytest.mark.parametrize(
    "body,ok",
    [
        ("<!-- run -->\n```sh\nfalse\necho after\n```\n", False),
        ("<!-- run: exit=3 -->\n```sh\nbash -c 'exit 2'\n```\n<!-- run -->\n```sh\necho after\n```\n", False),
        ("<!-- run: exit=3 -->\n```sh\nbash -c 'exit 3'\n```\n<!-- run -->\n```sh\necho after\n```\n", True),
    ],
)
def test_a_failing_command_stops_the_session(body: str, ok: bool, tmp_path: Path):
    """A command that fails (or exits other than its marker says) fails the page's session."""
    page = tmp_path / "page.md"
    page.write_text(body)
    script, _ = session(page)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    assert ("after" in done.stdout) == ok
