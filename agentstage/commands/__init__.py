"""CLI commands, in the order ``--help`` lists them. Each module defines ``register(app)``."""

COMMANDS = ["preview", "gate", "promote", "rollout", "rollback", "status"]
