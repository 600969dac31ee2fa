"""The CDK app that deploys one organisation's node to AWS (docs/aws.md)."""
