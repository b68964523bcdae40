"""The CI deployers of the agent platform: one DeployerIdentity per environment.

An administrator runs this project once per environment (``pulumi up --stack staging``, then
``production``) with their own credentials: the identity that deploys a stack cannot be created
by that stack. Its outputs are what the CI templates under ``ci/`` are configured with: the
provider resource name (google-github-actions/auth ``workload_identity_provider``, GitLab's token
audience), the service account to impersonate and the Budget API's quota project.
"""

import pulumi

from agentstage.config import load_platform
from components import DeployerIdentity, DeployerSpec

spec = load_platform(DeployerSpec, namespace=pulumi.get_project())
deployer = DeployerIdentity("deployer", spec)

pulumi.export("service_account", deployer.email)
pulumi.export("workload_identity_providers", deployer.providers)
pulumi.export("quota_project", deployer.quota_project)
