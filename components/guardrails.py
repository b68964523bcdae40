"""AgentGuardrails: the environment's Model Armor template, and who may use it."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.modelarmor import (
    TemplateFilterConfigArgs,
    TemplateFilterConfigMaliciousUriFilterSettingsArgs,
    TemplateFilterConfigPiAndJailbreakFilterSettingsArgs,
    TemplateFilterConfigRaiSettingsArgs,
    TemplateFilterConfigRaiSettingsRaiFilterArgs,
    TemplateFilterConfigSdpSettingsArgs,
    TemplateFilterConfigSdpSettingsBasicConfigArgs,
    TemplateTemplateMetadataArgs,
)

from components.contract import COMPONENT_TYPES, TEMPLATE_ENV
from components.known import known_after
from components.ops_spec import ENFORCEMENT, GuardrailsSpec

__all__ = [
    "AgentGuardrails",
    "filter_config",
    "template_id",
    "template_resource_name",
    "RAI_FILTERS",
    "MODEL_ARMOR_USER",
    "TEMPLATE_ENV",
]

#: Responsible-AI categories screened by the template.
RAI_FILTERS = ("SEXUALLY_EXPLICIT", "HATE_SPEECH", "HARASSMENT", "DANGEROUS")
MODEL_ARMOR_USER = "roles/modelarmor.user"


def _on(flag: bool) -> str:
    return "ENABLED" if flag else "DISABLED"


def template_id(environment: str, prefix: str = "") -> str:
    """``[<prefix>-]agentstage-<environment>``."""
    return "-".join(p for p in (prefix, "agentstage", environment) if p)


def template_resource_name(project: str, location: str, template: str) -> str:
    """The template's resource name as Model Armor forms it."""
    return f"projects/{project}/locations/{location}/templates/{template}"


def filter_config(spec: GuardrailsSpec, *, production: bool) -> TemplateFilterConfigArgs:
    """Prompt injection and jailbreak, responsible AI, malicious URLs and sensitive data,
    at the spec's confidence levels (stricter by default in production)."""
    rai = spec.effective_rai(production)
    return TemplateFilterConfigArgs(
        pi_and_jailbreak_filter_settings=TemplateFilterConfigPiAndJailbreakFilterSettingsArgs(
            filter_enforcement="ENABLED", confidence_level=spec.effective_jailbreak(production)
        ),
        rai_settings=TemplateFilterConfigRaiSettingsArgs(
            rai_filters=[
                TemplateFilterConfigRaiSettingsRaiFilterArgs(filter_type=t, confidence_level=rai) for t in RAI_FILTERS
            ]
        ),
        malicious_uri_filter_settings=TemplateFilterConfigMaliciousUriFilterSettingsArgs(
            filter_enforcement=_on(spec.malicious_urls)
        ),
        sdp_settings=TemplateFilterConfigSdpSettingsArgs(
            basic_config=TemplateFilterConfigSdpSettingsBasicConfigArgs(filter_enforcement=_on(spec.sensitive_data))
        ),
    )


class AgentGuardrails(pulumi.ComponentResource):
    """One Model Armor template per environment (``gcp.modelarmor.Template``), id
    ``[<prefix>-]agentstage-<environment>``, in ``spec.location`` (default: the region).

    :meth:`grant_user` gives an agent identity ``roles/modelarmor.user`` so it can screen
    prompts and responses. pulumi-gcp has no template-level IAM resource, so the grant is an
    additive project ``IAMMember``; the role only allows using templates, not changing them.

    Output: ``template_name`` (``projects/<project>/locations/<location>/templates/<id>``),
    which reaches each agent as ``MODEL_ARMOR_TEMPLATE``; it is formed from the inputs, so it
    is known in a first preview (``template_resource_name`` is the same as a plain string).
    """

    template_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        spec: GuardrailsSpec,
        project: str,
        location: str,
        environment: str,
        production: bool,
        prefix: str = "",
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentGuardrails"], name, None, opts)
        self._name = name
        self._project = project
        self.grants: dict[str, gcp.projects.IAMMember] = {}
        where = spec.location or location
        tid = template_id(environment, prefix)
        self.template_resource_name = template_resource_name(project, where, tid)
        self.template = gcp.modelarmor.Template(
            f"{name}-template",
            project=project,
            location=where,
            template_id=tid,
            labels=dict(labels),
            filter_config=filter_config(spec, production=production),
            template_metadata=TemplateTemplateMetadataArgs(
                enforcement_type=ENFORCEMENT[spec.enforcement],
                log_sanitize_operations=spec.log_operations,
                log_template_operations=spec.log_operations,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.template_name = known_after(self.template, self.template_resource_name)
        self.register_outputs({"template_name": self.template_name})

    def grant_user(self, agent: str, member: pulumi.Input[str]) -> gcp.projects.IAMMember:
        """Let ``member`` (an agent identity) screen content with the template."""
        grant = gcp.projects.IAMMember(
            f"{self._name}-user-{agent}",
            project=self._project,
            role=MODEL_ARMOR_USER,
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.grants[agent] = grant
        return grant
