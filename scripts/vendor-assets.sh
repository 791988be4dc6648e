#!/usr/bin/env bash
# Copies exactly the front-end files the console serves from node_modules (installed by
# `npm ci` from package-lock.json) into src/siaga112/console/static/vendor (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules
dst=src/siaga112/console/static/vendor
[ -d "$src/leaflet" ] || { echo "vendor-assets: run npm ci first" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst/leaflet" "$dst/topojson-client" "$dst/world-atlas"
cp "$src/leaflet/dist/leaflet.js" "$src/leaflet/dist/leaflet.css" "$src/leaflet/LICENSE" "$dst/leaflet/"
cp "$src/topojson-client/dist/topojson-client.min.js" "$src/topojson-client/LICENSE" "$dst/topojson-client/"
cp "$src/world-atlas/countries-110m.json" "$src/world-atlas/LICENSE" "$dst/world-atlas/"
