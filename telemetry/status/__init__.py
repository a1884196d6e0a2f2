"""Device availability: birth / last will (up/status), liveness from any message, the silence sweep."""
