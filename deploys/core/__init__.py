"""What every role uses, and what several roles share (docs/where-to-change-what.md): no role imports another role."""
