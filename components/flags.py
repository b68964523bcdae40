"""AgentFlags: one agent's feature flags as a Parameter Manager parameter, read by the agent at
run time, so flipping a flag changes one resource and never the agent's revision.

The contract (names, payload) lives in :mod:`agentstage.flags`, which agents import at run time.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from agentstage.flags import FLAGS_ENV, parameter_id, parameter_name, render_flags, version_id
from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.known import known_after

__all__ = ["AgentFlags", "FLAGS_ENV", "FLAGS_READER_ROLE", "reader_condition", "require_flags_env"]

#: The narrowest predefined role that reads a parameter's versions: only
#: ``parametermanager.parameterVersions.render`` (plus ``parametermanager.locations.get/list``
#: and ``resourcemanager.projects.get/list``; no ``parameterVersions.get``). Source: IAM
#: "Parameter Manager roles and permissions",
#: https://docs.cloud.google.com/iam/docs/roles-permissions/parametermanager#parametermanager.parameterAccessor
FLAGS_READER_ROLE = "roles/parametermanager.parameterAccessor"


def reader_condition(parameter_id_: str) -> str:
    """The IAM condition that limits a project-level grant to one parameter and its versions.

    Parameter Manager v1 has no per-parameter IAM policy (its discovery document has no
    ``getIamPolicy``/``setIamPolicy`` on parameters, and pulumi-gcp has no parameter IAM
    resource), so the grant is made on the project with a condition on ``resource.name``
    (https://cloud.google.com/iam/docs/conditions-attribute-reference#resource-name).
    Parameter Manager is on IAM's list of services that recognise resource attributes, with
    resource types ``parametermanager.googleapis.com/Parameter`` and ``.../ParameterVersion``
    and names ``projects/<project-number>/locations/<location>/parameters/<id>[/versions/<v>]``
    (https://docs.cloud.google.com/iam/docs/conditions-resource-attributes).
    The project part of the name is not compared: it is the project number there, and the
    binding only ever applies inside its own project. ``extract``
    returns the parameter id of a version name and ``""`` when the template does not match."""
    return (
        f'resource.name.endsWith("/locations/global/parameters/{parameter_id_}") || '
        f'resource.name.extract("/locations/global/parameters/{{parameter}}/versions/") == "{parameter_id_}"'
    )


class AgentFlags(pulumi.ComponentResource):
    """The parameter ``<service>-<environment>-flags`` (format JSON, labelled like the agent,
    without the release label so a release never touches it) and one version holding
    ``render_flags(flags)``; the agent identity may read this parameter only.

    Each change of ``flags`` is a NEW parameter version: the version id is derived from the
    payload (:func:`agentstage.flags.version_id`), and the provider replaces a version whose id
    or data changes (both are immutable in the API; pulumi-gcp ``ParameterVersion``:
    ``parameter_version_id`` and ``parameter_data`` force a new resource), creating the new one
    before deleting the old, so ``latest`` always exists. The superseded version is deleted, not
    retained: with payload-derived ids a retained version would block flipping back to the same
    flags (the create would be ALREADY_EXISTS); the history of flag changes is the stack config
    and the release ledger.

    Outputs: ``parameter_name`` (known at plan time; reaches the agent as ``FLAGS_ENV``),
    ``version_name``. Attributes: ``parameter``, ``version``, ``grant`` (for consumers that wait
    for the agent to be able to read its flags)."""

    parameter_name: pulumi.Output[str]
    version_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        flags: Mapping[str, bool],
        service_name: str,
        project: str,
        environment: str,
        member: pulumi.Input[str],
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentFlags"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pid = parameter_id(service_name, environment)
        full_name = parameter_name(project, service_name, environment)
        self.parameter = gcp.parametermanager.Parameter(
            f"{name}-parameter",
            project=project,
            parameter_id=pid,
            format="JSON",
            labels=dict(labels),
            opts=child,
        )
        parent = known_after(self.parameter, full_name)
        vid = version_id(flags)
        self.version = gcp.parametermanager.ParameterVersion(
            f"{name}-version",
            parameter=parent,
            parameter_version_id=vid,
            parameter_data=render_flags(flags),
            opts=child,
        )
        self.grant = gcp.projects.IAMMember(
            f"{name}-reader",
            project=project,
            role=FLAGS_READER_ROLE,
            member=member,
            condition=gcp.projects.IAMMemberConditionArgs(
                title=f"flags-{pid}"[:100],
                description="Read this agent's own feature flags parameter only",
                expression=reader_condition(pid),
            ),
            opts=child,
        )
        self.parameter_name = parent
        self.version_name = known_after(self.version, f"{full_name}/versions/{vid}")
        self.register_outputs({"parameter_name": self.parameter_name, "version_name": self.version_name})


def require_flags_env(component: str, name: str, features: Mapping[str, bool], extra_env: Mapping[str, object]) -> None:
    """Refuse an agent with ``features`` whose runtime would not learn where to read them:
    flags reach the agent only through ``FLAGS_ENV`` (an :class:`AgentFlags` parameter name)."""
    if features and FLAGS_ENV not in extra_env:
        raise ComponentError(
            component,
            name,
            f"the agent has features ({', '.join(sorted(features))}) but extra_env has no {FLAGS_ENV}: flags are "
            f"read at run time from Parameter Manager; create an AgentFlags for the agent and pass its "
            f"parameter_name as extra_env[{FLAGS_ENV!r}]",
        )
