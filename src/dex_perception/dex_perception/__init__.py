"""dex_perception: depth/RGB/camera_info -> segmented object point cloud with normals in the robot base frame.

ROS-free core (numpy + open3d, imported lazily)::

    from dex_perception.calibration import load_extrinsics
    from dex_perception.camera import CameraModel
    from dex_perception.pipeline import Perception

    camera = CameraModel.from_camera_info(640, 480, K_row_major)       # sensor_msgs/CameraInfo fields
    perception = Perception(extrinsics=load_extrinsics("config/calibration/sim_camera.yaml"))
    result = perception.process(depth, camera, rgb, prompt="largest")   # depth: float [m] or uint16 [mm]
    result.points, result.normals                                       # (P, 3) base frame, outward normals

Modules: :mod:`~dex_perception.pipeline` (table, clusters, target, cloud), :mod:`~dex_perception.camera`
(intrinsics, distortion, image decoding), :mod:`~dex_perception.calibration` (easy_handeye2 YAML, TF),
:mod:`~dex_perception.prompt` (SegmentObject prompt grammar), :mod:`~dex_perception.config`
(``default_config()`` + overrides), :mod:`~dex_perception.fusion` (multi-frame depth averaging),
:mod:`~dex_perception.sam` (Segment Anything backend), :mod:`~dex_perception.sync` (stamp matching),
:mod:`~dex_perception.errors` (typed errors with statuses), :mod:`~dex_perception.synthetic` (analytic
test scenes); ROS: :mod:`~dex_perception.node` (``perception_node``), :mod:`~dex_perception.msgs`;
benchmark: :mod:`~dex_perception.bench`.
"""
