# OrderDesk: one image for the web server, the worker and the migration step.

FROM python:3.11-slim AS build

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
# Runtime dependencies only: no dev tools, no embedded servers.
RUN uv sync --frozen --no-default-groups --no-install-project
COPY . .
# Installed in place (editable), so templates/, static/ and migrations/ are found
# beside src/ exactly as in a checkout.
RUN uv sync --frozen --no-default-groups


FROM python:3.11-slim

RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin orderdesk
# Code stays owned by root: the application cannot rewrite itself.
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER orderdesk
EXPOSE 8000
CMD ["orderdesk", "serve", "--host", "0.0.0.0", "--port", "8000"]
