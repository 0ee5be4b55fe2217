"""costaware: cost-sensitive XGBoost training and serving behind SageMaker's container contracts."""

__version__ = "0.2.0"

# Version of the model directory layout (metadata.json). The server refuses other major versions.
ARTIFACT_FORMAT_VERSION = 2
