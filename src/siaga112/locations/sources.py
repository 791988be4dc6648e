"""Where a caller location came from (its provenance), as stored in ``locations.source``."""

from __future__ import annotations

from enum import StrEnum


class LocationSource(StrEnum):
    NETWORK_CELL = "network_cell"  # P-Access-Network-Info cell, looked up in the cell table
    PIDF_LO = "pidf_lo"  # SIP Geolocation with a PIDF-LO body (RFC 6442 / RFC 4119)
    AML_SMS = "aml_sms"  # Advanced Mobile Location text/data SMS (ETSI TS 103 625)
    AML_HTTPS = "aml_https"  # Advanced Mobile Location HTTPS POST
    OPERATOR = "operator"  # entered or placed by a person in the centre
