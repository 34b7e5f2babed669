"""Building blocks shared by the methods: networks and target updates."""
