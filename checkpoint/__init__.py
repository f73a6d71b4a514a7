"""stepgraph.checkpoint: checkpoint data model, serialization and savers.

Durable checkpoints (savers for memory, SQLite and PostgreSQL) are being built;
this package holds no public names yet.
"""

__all__: list[str] = []
