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
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=assets /src/src/siaga112/console/static/vendor ./src/siaga112/console/static/vendor
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10112 --home /app siaga112
WORKDIR /app
COPY --from=build /install /usr/local
COPY migrations ./migrations
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
