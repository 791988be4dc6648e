# siaga112 service image: API, FastAGI server and AMI client (`siaga112 serve`).
# Asterisk itself runs on the PBX host; point SIAGA112_AMI__HOST / SIAGA112_AGI__HOST at it.
# The console's front-end files from the npm registry, pinned by package-lock.json (Node is
# needed only here, never at run time).
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY scripts/vendor-assets.sh ./scripts/
RUN mkdir -p src/siaga112/console/static && scripts/vendor-assets.sh

FROM python:3.11-slim AS build
WORKDIR /src
# The exact versions and hashes of requirements.lock (`make lock`), then the package alone:
# pip adds nothing the lock does not list.
COPY requirements.lock ./
RUN pip install --no-cache-dir --prefix=/install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
# Only the service: the development sandbox (src/siaga112_sandbox) stays out of the image.
COPY src/siaga112 ./src/siaga112
COPY --from=assets /src/src/siaga112/console/static/vendor ./src/siaga112/console/static/vendor
RUN pip install --no-cache-dir --prefix=/install --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10112 --home /app siaga112
WORKDIR /app
COPY --from=build /install /usr/local
COPY migrations ./migrations
# FastAGI listens on every interface here: set SIAGA112_AGI__ALLOW_FROM to the PBX hosts (default
# loopback refuses them) and share SIAGA112_AGI__SECRET with the PBX host's rendered dialplan.
ENV SIAGA112_MIGRATIONS_DIR=/app/migrations \
    SIAGA112_API__HOST=0.0.0.0 \
    SIAGA112_AGI__HOST=0.0.0.0 \
    SIAGA112_STATE_DIR=/app/state \
    PYTHONUNBUFFERED=1
RUN mkdir -p /app/state && chown siaga112 /app/state
USER siaga112
EXPOSE 8112 4573
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8112/healthz', timeout=2).status == 200 else 1)"
CMD ["siaga112", "serve"]
