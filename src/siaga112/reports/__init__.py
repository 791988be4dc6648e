"""Reports for the agencies and the city: incidents by category, classification, agency,
kecamatan and hour, as JSON or CSV."""
