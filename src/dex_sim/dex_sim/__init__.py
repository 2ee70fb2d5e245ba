"""dex_sim: the MuJoCo counterpart of the real hardware.

:mod:`dex_sim.scene` builds the scene (table, robot from its YAML, RGB-D camera, lights);
:mod:`dex_sim.render` renders RGB and metric depth off-screen (EGL or OSMesa on CPU).
"""
