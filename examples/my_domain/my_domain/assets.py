"""The ``cascade.assets`` entry point: importing this module registers both example assets."""

from my_domain.custom_resource_asset import my_custom_asset
from my_domain.rest_api_asset import my_asset

__all__ = ["my_asset", "my_custom_asset"]
