"""The scoring engine: frameworks as data, exact decimal arithmetic, no I/O."""
