"""The worker side: the catalog store (no Celery) and the Celery app that drives it.

``celery -A worker worker`` finds the app in ``worker.celery``, the layout Celery documents.
"""
