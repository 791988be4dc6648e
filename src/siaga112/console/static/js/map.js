// The call's locations on a Leaflet map: one uncertainty circle per fix (radius in metres),
// labelled by source and age; the confirmed one drawn apart. With no tile server configured
// (tests, demo, a centre without internet) the basemap is drawn from files served here:
// country outlines (world-atlas, Natural Earth) and the centre's kecamatan outlines.

import { page, t, age } from "./common.js";

const L = window.L;

const SOURCE_COLOURS = {
  network_cell: "#8a5a00",
  pidf_lo: "#1f5fbf",
  aml_sms: "#0a7a3b",
  aml_https: "#0a7a3b",
  operator: "#6b2fa3",
};

export function sourceLabel(source) {
  return t(`source.${source}`);
}

export class CallMap {
  constructor(node) {
    this.map = L.map(node, { zoomControl: true, attributionControl: true, preferCanvas: false });
    this.map.setView(page.map.center, page.map.zoom);
    this.layer = L.layerGroup().addTo(this.map);
    this.ready = this.basemap();
  }

  async basemap() {
    if (page.map.tile_url) {
      L.tileLayer(page.map.tile_url, { attribution: page.map.tile_attribution }).addTo(this.map);
      return;
    }
    this.map.attributionControl.addAttribution(t("map.offline_attribution"));
    const [world, kecamatan] = await Promise.all([
      fetch("/console/static/vendor/world-atlas/countries-110m.json").then((r) => r.json()),
      fetch("/console/boundaries.geojson").then((r) => (r.ok ? r.json() : null)),
    ]);
    const land = window.topojson.feature(world, world.objects.countries);
    L.geoJSON(land, {
      interactive: false,
      style: { color: "#7a8794", weight: 1, fillColor: "#eef1e6", fillOpacity: 1 },
    }).addTo(this.map);
    if (kecamatan) {
      L.geoJSON(kecamatan, {
        style: { color: "#9a6b3a", weight: 1, dashArray: "4 3", fill: false },
        onEachFeature: (feature, layer) => {
          const name = feature.properties && feature.properties.name;
          if (name) layer.bindTooltip(String(name), { sticky: true });
        },
      }).addTo(this.map);
    }
    this.layer.bringToFront && this.layer.bringToFront();
  }

  show(locations) {
    this.layer.clearLayers();
    const bounds = [];
    for (const loc of locations) {
      if (loc.lat === null || loc.lon === null) continue;
      const colour = loc.confirmed ? "#c00018" : SOURCE_COLOURS[loc.source] || "#444";
      const label = `${sourceLabel(loc.source)} · ±${Math.round(loc.radius_m || 0)} m · ${age(loc.observed_at)}`;
      if (loc.radius_m) {
        L.circle([loc.lat, loc.lon], {
          radius: loc.radius_m,
          color: colour,
          weight: loc.confirmed ? 3 : 1,
          fillOpacity: 0.08,
        })
          .bindTooltip(label)
          .addTo(this.layer);
      }
      L.circleMarker([loc.lat, loc.lon], { radius: 5, color: colour, fillOpacity: 1 })
        .bindTooltip(label)
        .addTo(this.layer);
      bounds.push([loc.lat, loc.lon]);
      if (loc.radius_m) {
        const b = L.latLng(loc.lat, loc.lon).toBounds(loc.radius_m * 2);
        bounds.push(b.getSouthWest(), b.getNorthEast());
      }
    }
    if (bounds.length) this.map.fitBounds(L.latLngBounds(bounds), { maxZoom: 16, padding: [20, 20] });
  }

  invalidate() {
    this.map.invalidateSize();
  }
}
