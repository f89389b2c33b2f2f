"""The app that ``celery -A worker worker`` and ``celery -A worker beat`` load.

Building it reads nothing and connects to nothing: settings are read from the environment
(``CATALOG_*``) when Celery first needs its configuration.
"""

from worker.app import create_app

app = create_app()
