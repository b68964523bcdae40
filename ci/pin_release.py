"""Pin a freshly built image into a stack's config: ``release.image`` and ``release.version``.

The post-merge pipelines call it after pushing the image: the digest the registry returned is
written into ``stacks/Pulumi.<stack>.yaml`` (a comment-preserving edit through agentstage's own
stack-file editor, so only those two lines change), then ``pulumi up --stack staging`` deploys
exactly that image. A new version goes with every new image, because a version is never reused
with other contents (the release ledger refuses it at promotion).

    python ci/pin_release.py staging --agent support-bot \\
        --image us-docker.pkg.dev/acme/agents/support-bot@sha256:<64 hex> --version 1.4.0+g1a2b3c4

agentstage has no command that sets a release by hand on purpose (releases move between stacks
with ``promote``); this script is the one place a pipeline writes one. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_DIGEST = re.compile(r"^[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")


def pin(project: Path, stack: str, agent: str, image: str, version: str) -> str:
    """Write ``image`` and ``version`` as the agent's release in ``stack``; return the diff."""
    import difflib

    from agentstage.engine import load_project
    from agentstage.errors import BadInput
    from agentstage.release.stackfile import StackFile, plain

    if not _DIGEST.match(image):
        raise BadInput(f"--image: {image!r} is not pinned by digest; use <registry>/<repo>/<image>@sha256:<64 hex>")
    loaded = load_project(project)
    stack_file = StackFile.load(loaded.stack_config_dir / f"Pulumi.{stack}.yaml", loaded.name)
    release = plain(stack_file.agent(agent).get("release")) or {}
    stack_file.set_release(agent, {**release, "version": version, "image": image})
    before, after = stack_file.original, stack_file.save()
    name = str(stack_file.path)
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), name, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name, e.g. staging")
    parser.add_argument("--agent", required=True, help="the agent whose release is pinned")
    parser.add_argument("--image", required=True, help="<registry>/<repo>/<image>@sha256:<64 hex>")
    parser.add_argument("--version", required=True, help="the new release version (never reused)")
    parser.add_argument("-C", "--project", type=Path, default=Path("."), help="Pulumi project directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from agentstage.errors import BadInput

    try:
        diff = pin(args.project, args.stack, args.agent, args.image, args.version)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(diff, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
