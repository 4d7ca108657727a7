# syntax=docker/dockerfile:1
# One image for the server (uvicorn, the default command; append `--server daphne` for daphne) and
# the task worker (`python manage.py run_worker`); docker-compose.yml runs both next to PostgreSQL
# and Redis.
#
# Sandboxes: the `local` backend isolates agent code with bubblewrap, which needs unprivileged
# user namespaces. Docker's default seccomp profile (and AppArmor on Ubuntu hosts) refuses to
# create them, so containers that run tasks need
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined
# (docker-compose.yml sets both). That widens what the container itself may do; the alternative,
# SANDBOX_ALLOW_UNISOLATED=1, keeps Docker's profiles but runs agent code with only rlimits and a
# separate uid, which is acceptable only when every agent and every user is trusted.
# Users: the image runs as the unprivileged `app` user by default (web and beat start no
# sandboxes with TASK_EXECUTOR=celery). Processes that run sandboxes (the Celery worker, or web
# with TASK_EXECUTOR=inline) run as root (`user: root` in docker-compose.yml), because the
# backend drops each sandbox to its own uid (SANDBOX_UID_BASE + n), which needs the privilege to
# change uid; agent code itself never runs as root.
#
# Three stages: `build` resolves the locked dependencies with uv, `assets` installs the locked npm
# packages (Pyodide for the browser runtime, served as static files); the runtime stage gets only
# the virtualenv, node_modules and the code (no uv, no npm, no build cache).
FROM node:20-bookworm-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev


FROM python:3.11-slim-bookworm AS build

ENV UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# The uv that wrote uv.lock; scripts/setup.sh pins the same version (a test checks they agree).
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache


FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# bubblewrap: the sandbox; tini: reaps the orphans sandboxes leave behind and forwards signals.
# util-linux (prlimit, setpriv) is already in the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies before the code, so editing code does not reinstall them.
COPY --from=build /app/.venv /app/.venv
COPY --from=assets /app/node_modules /app/node_modules

COPY . .
RUN chmod 0755 scripts/docker-entrypoint.sh && mkdir -p /app/var && chown app:app /app/var

# Workspaces live on the var/ volume shared by web and worker; the toolchain sandboxes see
# (pytest; sandboxes have no network) is part of the image, outside any volume, so a new image
# brings its own. It is installed at build time with a throw-away key and var/ so no secret is
# baked into a layer.
ENV PATH=/app/.venv/bin:$PATH \
    SANDBOX_DATA_DIR=/app/var/sandbox \
    TOOLCHAIN_DIR=/opt/toolchain
RUN SECRET_KEY=build-only VAR_DIR=/tmp/build-var SANDBOX_DATA_DIR=/tmp/build-var/sandbox \
        python manage.py install_toolchain \
    && rm -rf /tmp/build-var

USER app
EXPOSE 8000
# -s: compose's `init: true` may already run an init as PID 1; as a subreaper tini still reaps.
ENTRYPOINT ["tini", "-s", "--", "/app/scripts/docker-entrypoint.sh"]
CMD ["python", "-m", "runtime_project.serve", "--host", "0.0.0.0", "--port", "8000"]
