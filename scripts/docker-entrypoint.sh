#!/usr/bin/env bash
# Container entry point (see Dockerfile): bring the database up to date, then become the command
# (the server by default, `python manage.py run_worker` for the worker) so it gets signals directly.
#
# RUN_MIGRATIONS=0 skips the database step; docker-compose.yml sets it for the worker, which
# starts after the web container has migrated, so two containers never migrate at once.
set -euo pipefail
cd /app

if [[ "${RUN_MIGRATIONS:-1}" != 0 ]]; then
  python manage.py migrate --noinput
  # Idempotent: creates the admin and its API token on the first start only, as `make serve` does.
  python manage.py bootstrap
fi

exec "$@"
