"""The spend-cap enforcer: a Cloud Run function that receives the budget notifications of
capped agents (Pub/Sub messages delivered as CloudEvents by Eventarc) and, past an agent's cap,
takes that agent's configured action and nothing else: its canary's traffic to 0%, its service's
max instances down, or named feature flags off. It never touches billing.

The modules here are deployed on their own (with :mod:`agentstage.flags`) as the function's
source: they import neither Pulumi nor the rest of agentstage, and the Google client libraries
only when an action runs. ``functions_framework`` is imported by :mod:`.main` alone.
"""
