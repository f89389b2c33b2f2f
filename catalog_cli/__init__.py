"""The ``catalog`` command line."""
