"""``catalog chaos``: a seeded, bounded run that proves exactly-once effects under failures."""
