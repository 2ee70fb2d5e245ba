"""dex_perception: depth/RGB/camera_info -> segmented object point cloud with normals in the robot base frame.

Not implemented yet (see the perception issue); the package exists so both install paths are complete.
"""
