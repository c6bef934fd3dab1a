"""An Optimove emulator: the Optimove API for many tenants, plus a control API.

`create_app(config)` gives the ASGI app; `testing.running_emulator()` runs it on loopback for
tests; `optibridge emulator` runs it from the command line.
"""

from optibridge.emulator.app import create_app
from optibridge.emulator.config import EmulatorConfig, TenantSpec
from optibridge.emulator.generator import CampaignSpec, WeightedTemplate, WeightedTime

__all__ = [
    "CampaignSpec",
    "EmulatorConfig",
    "TenantSpec",
    "WeightedTemplate",
    "WeightedTime",
    "create_app",
]
