"""Verify alone: `pyinfra inventories/prod.py deploys/verify.py` (the last step of deploys/all.py,
deploys/steps/verify.py): Triton vs local ONNX Runtime on every host, reports and the fleet table."""

from pyinfra import state

from deploys.lib import settings
from deploys.steps.verify import verify

settings.validate_fleet(state)

verify()
