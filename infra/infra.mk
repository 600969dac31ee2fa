# AWS: one CDK stack per organisation, described by infra/orgs/$(ORG).yaml (see docs/aws.md).
#   make synth ORG=example    the CloudFormation template in $(OUT), offline: no AWS account or credentials
#   make deploy ORG=example   package the app with its dependencies and deploy it with `npx cdk deploy`
#   make destroy ORG=example  delete the stack (the table stays: it holds the reports and cases)
ORG ?=
OUT ?= infra/cdk.out
CDK_DEPLOY_FLAGS ?=
INFRA_NODE_MODULES := infra/node_modules/.package-lock.json

.PHONY: synth deploy destroy

define require_org
	@test -n "$(ORG)" || { echo "usage: make $@ ORG=<name>, for the file infra/orgs/<name>.yaml" >&2; exit 2; }
endef

# The template alone: the code asset leaves out the app's third-party packages, so nothing is downloaded.
synth: $(STAMP)
	$(require_org)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-$${AWS_REGION:-us-east-1}} AWS_EC2_METADATA_DISABLED=true \
	NETIMMUNE_ORG=$(ORG) NETIMMUNE_BUNDLE_DEPENDENCIES=0 CDK_OUTDIR=$(abspath $(OUT)) \
		$(BIN)/python -m infra.cdk_app
	@echo "template: $(OUT)/netimmune-$(ORG).template.json"

$(INFRA_NODE_MODULES): infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund --no-update-notifier

# Credentials and region come from the usual AWS sources (AWS_PROFILE, AWS_REGION, ~/.aws, SSO).
# One synth (with the app's dependencies), then `cdk bootstrap`, which the first deploy to an account and
# region needs and later ones pass through unchanged, and the deploy, both from that same cloud assembly.
CDK = cd infra && PATH="$(abspath $(BIN)):$$PATH" NETIMMUNE_ORG=$(ORG) npx --no-install cdk
deploy: $(STAMP) $(INFRA_NODE_MODULES)
	$(require_org)
	$(CDK) synth --quiet netimmune-$(ORG)
	$(CDK) bootstrap --app cdk.out
	$(CDK) deploy --app cdk.out netimmune-$(ORG) $(CDK_DEPLOY_FLAGS)

destroy: $(STAMP) $(INFRA_NODE_MODULES)
	$(require_org)
	$(CDK) destroy netimmune-$(ORG)
