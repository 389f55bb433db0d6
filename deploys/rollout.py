"""`python -m deploys.rollout INVENTORY ...`: the rollout driver (deploys/tools/rollout.py)."""

import sys

from deploys.tools.rollout import main

if __name__ == "__main__":
    sys.exit(main())
