"""Dashboard aggregates and the seed's statistics forms."""
