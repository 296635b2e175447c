"""Engines that run edgead's own steps beyond one process: batch scoring on a Ray cluster
(`ray_scoring`). Optional extras; nothing on the device path imports them."""
