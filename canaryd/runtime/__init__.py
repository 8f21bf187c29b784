"""The runtime: gathers observations, calls the pure core, applies its decisions."""
