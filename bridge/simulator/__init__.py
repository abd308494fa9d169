"""A fake PVS5x/PVS6 for demos and tests: a real HTTP server with the PVS's habits."""
