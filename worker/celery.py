"""The app that ``celery -A worker worker`` and ``celery -A worker beat`` load.

Building it reads nothing and connects to nothing: settings are read from the environment
(``CATALOG_*``) when Celery first needs its configuration. Invalid settings then print one
line naming every problem and exit 2 (worker and beat alike), without a traceback.
"""

from worker.app import create_app

app = create_app(exit_on_bad_settings=True)
