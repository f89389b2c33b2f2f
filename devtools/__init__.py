"""The test and development harness: a private redis-server, the one process supervisor, the
``catalog dev`` stack and the chaos suite.

Nothing that production runs imports this package (a test checks it), and the production
image does not ship it (Dockerfile): ``catalog dev`` and ``catalog chaos`` are for a checkout.
"""
