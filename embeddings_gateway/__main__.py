"""``python -m embeddings_gateway --config FILE [--check]``: the systemd unit's entry (embeddings_gateway.app.main)."""

import sys

from embeddings_gateway.app import main

sys.exit(main())
