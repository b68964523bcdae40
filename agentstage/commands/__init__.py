"""CLI commands, in the order ``--help`` lists them. Each module defines ``register(app)``."""

COMMANDS = [
    "preview",
    "check",
    "gate",
    "promote",
    "rollout",
    "rollback",
    "status",
    "loadtest",
    "flags",
    "incident",
    "registry",
]
