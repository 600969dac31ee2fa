"""The CDK app: `NETIMMUNE_ORG=<name> python -m infra.cdk_app` synthesizes the stack of infra/orgs/<name>.yaml.

`make synth ORG=<name>` and `make deploy ORG=<name>` run it (the latter through `npx cdk deploy`).
NETIMMUNE_BUNDLE_DEPENDENCIES=0 leaves the app's third-party packages out of the code asset: the
template is the same, nothing is downloaded, and the result is for reading and testing, not deploying.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import aws_cdk as cdk

from .org import OrgConfigError, load_org, org_file
from .source import stage_app
from .stack import MissingHandler, NodeStack


def synth(org_name: str, outdir: Path, with_dependencies: bool) -> None:
    """Write the cloud assembly of one org's stack (netimmune-<org>.template.json and its assets) to `outdir`."""
    org = load_org(org_file(org_name))
    outdir = outdir.resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="netimmune-infra-") as work:
        app_dir = stage_app(Path(work) / "app", org.policy, with_dependencies)
        os.chdir(work)  # Chalice's construct leaves its chalice.out/ in the working directory
        try:
            app = cdk.App(outdir=str(outdir))
            NodeStack(app, org, app_dir)
            app.synth()
        finally:
            os.chdir(here)


def main() -> None:
    # Chalice's packager makes a boto3 client, which needs some region; the template says ${AWS::Region}.
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("CDK_DEFAULT_REGION")
                          or os.environ.get("AWS_REGION") or "us-east-1")
    org_name = os.environ.get("NETIMMUNE_ORG", "")
    if not org_name:
        sys.exit("no org given: make synth ORG=<name>, for the file infra/orgs/<name>.yaml")
    try:
        synth(org_name, Path(os.environ.get("CDK_OUTDIR", "cdk.out")),
              os.environ.get("NETIMMUNE_BUNDLE_DEPENDENCIES", "1") != "0")
    except (OrgConfigError, MissingHandler) as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
