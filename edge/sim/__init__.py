"""The fleet simulator: many virtual devices on one asyncio loop (see edge.simulate)."""
