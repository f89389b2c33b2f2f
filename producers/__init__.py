"""Everything a service needs to submit batches. Never imports ``worker``."""
