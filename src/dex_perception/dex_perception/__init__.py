"""dex_perception: depth/RGB/camera_info -> segmented object point cloud with normals in the robot base frame.

See docs in the modules: pipeline (core), camera, calibration, prompt, fusion, sam, sync, node, bench.
"""
