# catalog-ingest: one image for the Celery worker, the Celery beat and the `catalog` CLI.
# Pinned to a patch release and a Debian release: a rebuild gets the same interpreter.
# Bump it deliberately (and re-run the tests on that Python).
FROM python:3.11.11-slim-bookworm

# MALLOC_ARENA_MAX: glibc gives each thread of the worker's pool an arena of its own, which
# keeps freed memory: with 2 the 10k-product benchmark worker peaks at 130 MB instead of 180.
# MALLOC_MMAP_THRESHOLD_: a fixed threshold. glibc otherwise raises it to the size of each large
# block freed, so the next catalog-sized buffers (one per commit) come from the heap and stay
# there: with 1 MiB a 2-worker 10k-product burst peaks at 140 MB per worker instead of 190.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CATALOG_PATH=/data/catalog/products.json \
    CATALOG_REDIS_URL=redis://redis:6379/0

# An unprivileged user owns the data folder. A named volume mounted at /data starts with
# the image's contents and ownership, so the catalog, its backups and the beat schedule
# are writable by this user without a chown at start-up.
RUN groupadd --system --gid 10001 catalog \
    && useradd --system --uid 10001 --gid catalog --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin catalog \
    && mkdir -p /data/catalog/backups /data/beat \
    && chown -R catalog:catalog /data

WORKDIR /app

# Only what the build needs: the metadata (README.md is the package's readme) and the packages.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY producers/ producers/
COPY worker/ worker/
COPY catalog_core/ catalog_core/
COPY catalog_cli/ catalog_cli/

RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

USER catalog:catalog

CMD ["celery", "-A", "worker", "worker", "--loglevel=INFO"]
