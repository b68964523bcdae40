"""The release flow: immutable manifests, readiness gates, canary analysis, rollback.

Everything here edits only the stack config (comment-preserving) and the release ledger under
``.agentstage/``; the offline engine then re-plans the stack from the edited config, so the
code and the cloud never drift apart. ``--apply`` hands the same config to ``pulumi up``.
"""
