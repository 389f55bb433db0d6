"""`python -m deploys.model_lock refresh|show`: the model lock command (deploys/tools/model_lock.py)."""

import sys

from deploys.tools.model_lock import main

if __name__ == "__main__":
    sys.exit(main())
