"""The sample platform's HTTP API: `create_app` builds the FastAPI app; routes live one module per resource."""

from sample_platform.api.app import create_app
from sample_platform.api.platform import Platform, build_platform

__all__ = ["Platform", "build_platform", "create_app"]
