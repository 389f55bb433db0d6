"""pyinfra's config file (read by the CLI before the inventory and before it connects to hosts):
the run's structured events (deploys/core/events.py) start here, so a host pyinfra cannot connect
to is an event too."""

from pyinfra import state

from deploys.core import events

events.register_at_init(state)
