"""``perception_node``: camera topics -> object cloud, scene cloud, table, markers, status; the
``/dex/segment_object`` service. A thin adapter around :class:`dex_perception.pipeline.Perception`.

Subscribes (best-effort, so it matches reliable and best-effort cameras; ``reliable_sensors:=true``
for a reliable subscription, e.g. in tests where no frame may be dropped):
    ``/camera/depth/image_rect_raw`` (sensor_msgs/Image 16UC1 [mm] or 32FC1 [m]),
    ``/camera/depth/camera_info`` (sensor_msgs/CameraInfo),
    ``/camera/color/image_raw`` (sensor_msgs/Image rgb8/bgr8/..., optional, registered to depth).
    Depth and info are matched by stamp (``info_slop_s``), colour by nearest stamp within
    ``color_slop_s`` (:class:`dex_perception.sync.StampSync`).
Publishes (reliable, transient-local depth 1: late subscribers get the last result):
    ``/dex/object_cloud`` (sensor_msgs/PointCloud2 x y z normal_x normal_y normal_z, base frame),
    ``/dex/scene_cloud`` (PointCloud2 x y z: the workspace, voxel-down-sampled),
    ``/dex/table`` (geometry_msgs/PolygonStamped: convex hull of the table inliers on the plane),
    ``/dex/markers`` (visualization_msgs/MarkerArray, namespace ``perception``: table outline,
    table surface, object box, cluster centres, object normals, status text),
    ``/dex/perception/status`` (std_msgs/String, JSON: status, message, stamp, num_objects,
    target, points, table plane, timings_ms).
Service:
    ``/dex/segment_object`` (dex_interfaces/srv/SegmentObject): segment the newest matched frame
    with the request's prompt; with ``workspace_raise`` > 0 [m] the workspace box's top is raised
    for that request (a lifted object; then nothing is published or cached), with
    ``return_scene`` the answer also carries every point above the table in the box, whatever the
    status; statuses ``ok``, ``no_frame``, ``empty_depth``, ``no_table``, ``bad_request``,
    ``nothing_in_workspace``, ``bad_prompt``, ``bad_encoding``, ``size_mismatch``,
    ``bad_camera_info``, ``unsupported_distortion``, ``bad_image``, ``bad_calibration``,
    ``sam_checkpoint_missing``, ``sam_error``, ``no_transform``, ``internal_error``.

Parameters: ``calibration`` (easy_handeye2-style YAML, base -> camera optical frame; empty: the
camera pose is looked up in TF per frame when ``tf2_ros`` exists, i.e. in a full ROS install),
``base_frame`` (``base_link``), ``config`` (optional YAML of PerceptionConfig overrides),
``prompt`` (continuous-mode prompt, ``""`` = config default), ``publish_rate_hz`` (continuous
processing of new frames; 0 = only on service calls), ``fusion_frames`` (average the newest N
matched depth frames of a static scene), ``use_color``, ``info_slop_s``, ``color_slop_s``,
``reliable_sensors``,
``sam_checkpoint``, ``sam_model_type``, ``sam_device``.

Nothing a message contains can stop the node: every callback turns errors into a status.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np

from dex_perception.errors import PerceptionError

NAMESPACE = "perception"
STATUS_TOPIC = "/dex/perception/status"
PARAMETERS = {
    "calibration": "",
    "base_frame": "base_link",
    "config": "",
    "prompt": "",
    "publish_rate_hz": 2.0,
    "fusion_frames": 1,
    "use_color": True,
    "info_slop_s": 0.001,
    "color_slop_s": 0.03,
    "sam_checkpoint": "",
    "sam_model_type": "vit_b",
    "sam_device": "cpu",
    "reliable_sensors": False,
}


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from geometry_msgs.msg import Point
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import ColorRGBA, Header, String
    from visualization_msgs.msg import Marker, MarkerArray

    from dex_description.node_main import build_node
    from dex_interfaces.srv import SegmentObject
    from dex_perception import msgs as conv
    from dex_perception.calibration import load_extrinsics
    from dex_perception.camera import check_sizes
    from dex_perception.config import config_from_dict, default_config, load_config
    from dex_perception.fusion import fuse_depth
    from dex_perception.pipeline import Perception
    from dex_perception.sync import StampSync

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

    class PerceptionNode(Node):
        def __init__(self) -> None:
            super().__init__("dex_perception")
            dynamic = ParameterDescriptor(dynamic_typing=True)  # 4 and 4.0 both work for a rate
            for name, default in PARAMETERS.items():
                self.declare_parameter(name, default, dynamic)
            self.perception: Perception | None = None
            self.setup_error: PerceptionError | None = None
            self.tf_buffer = None
            try:
                v = self._read_parameters()
            except PerceptionError as exc:
                self.setup_error = exc
                v = dict(PARAMETERS)
            self.base_frame = str(v["base_frame"])
            self.prompt = str(v["prompt"])
            self.use_color = bool(v["use_color"])
            self.config = default_config()
            try:
                if self.setup_error is not None:
                    raise self.setup_error
                cfg = load_config(v["config"]) if v["config"] else default_config()
                overrides = {"fusion_frames": v["fusion_frames"]}
                if v["sam_checkpoint"]:
                    overrides.update(sam_checkpoint=v["sam_checkpoint"], sam_model_type=v["sam_model_type"],
                                     sam_device=v["sam_device"])
                cfg = config_from_dict(overrides, cfg)
                calib = str(v["calibration"])
                if calib:
                    self.perception = Perception(cfg, load_extrinsics(calib, self.base_frame))
                else:
                    self.tf_buffer = self._tf_buffer()
                    self.perception = Perception(cfg, np.eye(4))  # pose looked up per frame
                self.config = cfg
            except PerceptionError as exc:
                self.setup_error = exc
                self.perception = None
                self.config = default_config()
                self.get_logger().error(f"perception is not configured: {exc}")
            self.sync = StampSync(max(10, 2 * self.config.fusion_frames), int(v["info_slop_s"] * 1e9),
                                  int(v["color_slop_s"] * 1e9))
            self.last_analysis = None  # (stamp_ns, SceneAnalysis)
            self.last_processed_ns: int | None = None
            self.warned_frame = False

            self.pub_object = self.create_publisher(PointCloud2, "/dex/object_cloud", latched)
            self.pub_scene = self.create_publisher(PointCloud2, "/dex/scene_cloud", latched)
            from geometry_msgs.msg import PolygonStamped

            self.pub_table = self.create_publisher(PolygonStamped, "/dex/table", latched)
            self.pub_markers = self.create_publisher(MarkerArray, "/dex/markers", latched)
            self.pub_status = self.create_publisher(String, STATUS_TOPIC, latched)
            sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                                    reliability=(ReliabilityPolicy.RELIABLE if v["reliable_sensors"]
                                                 else ReliabilityPolicy.BEST_EFFORT))
            self.create_subscription(Image, "/camera/depth/image_rect_raw", self.on_depth, sensor_qos)
            self.create_subscription(CameraInfo, "/camera/depth/camera_info", self.on_info, sensor_qos)
            if self.use_color:
                self.create_subscription(Image, "/camera/color/image_raw", self.on_color, sensor_qos)
            self.create_service(SegmentObject, "/dex/segment_object", self.on_segment)
            rate = v["publish_rate_hz"]
            if rate > 0:
                self.create_timer(1.0 / rate, self.on_timer)
            if self.setup_error is not None:
                self.publish_status(self.setup_error.status, str(self.setup_error))
            else:
                from dex_perception.pipeline import o3d

                o3d()  # import open3d now (~0.7 s) rather than in the first service call
                self.publish_status("waiting", "waiting for depth + camera_info")

        def _read_parameters(self) -> dict:
            """Parameter values converted to their types; ConfigError names a bad one."""
            from dex_perception.errors import ConfigError

            out = {}
            for name, default in PARAMETERS.items():
                value = self.get_parameter(name).value
                try:
                    if isinstance(default, bool):
                        if not isinstance(value, bool):
                            raise ValueError("expected true or false")
                    elif isinstance(default, int):
                        if isinstance(value, bool) or float(value) != int(float(value)):
                            raise ValueError("expected an integer")
                        value = int(float(value))
                    elif isinstance(default, float):
                        if isinstance(value, bool) or not np.isfinite(float(value)) or float(value) < 0:
                            raise ValueError("expected a finite number >= 0")
                        value = float(value)
                    else:
                        value = "" if value is None else str(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"parameter {name}", f"{value!r}: {exc}") from None
                out[name] = value
            return out

        def _tf_buffer(self):
            """A tf2 buffer + listener when tf2_ros exists (full ROS install), else the calibration
            error that says a file is needed (tf2_ros has no wheel)."""
            try:
                import tf2_ros
            except ImportError:
                from dex_perception.errors import CalibrationError

                raise CalibrationError("<parameter calibration>", "", "no calibration file given and tf2_ros is not "
                                       "installed: set 'calibration' to an easy_handeye2-style YAML") from None
            buffer = tf2_ros.Buffer()
            self.tf_listener = tf2_ros.TransformListener(buffer, self)
            self.get_logger().info(f"camera pose from TF ({self.base_frame} -> the depth image's frame_id)")
            return buffer

        def _update_extrinsics_from_tf(self, frame_id: str) -> None:
            from rclpy.time import Time

            from dex_perception.calibration import extrinsics_from_transform
            from dex_perception.errors import TransformError

            if not frame_id:
                raise TransformError("the depth image has no frame_id to look up in TF")
            try:
                tf = self.tf_buffer.lookup_transform(self.base_frame, frame_id, Time())
            except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
                raise TransformError(f"no TF {self.base_frame} -> {frame_id}: {exc}") from None
            t, r = tf.transform.translation, tf.transform.rotation
            self.perception.set_extrinsics(extrinsics_from_transform((t.x, t.y, t.z), (r.x, r.y, r.z, r.w),
                                                                     self.base_frame, frame_id))

        # -- inputs ---------------------------------------------------------------------------
        def _guard(self, what: str, fn, *args):
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - a message must never stop the node
                self.get_logger().error(f"{what}: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)
                self.publish_status("internal_error", f"{what}: {type(exc).__name__}: {exc}")
                return None

        def on_depth(self, msg: Image) -> None:
            self._guard("depth callback", lambda: self.sync.add_depth(conv.stamp_ns(msg.header), msg))

        def on_info(self, msg: CameraInfo) -> None:
            self._guard("camera_info callback", lambda: self.sync.add_info(conv.stamp_ns(msg.header), msg))

        def on_color(self, msg: Image) -> None:
            self._guard("colour callback", lambda: self.sync.add_color(conv.stamp_ns(msg.header), msg))

        # -- processing -----------------------------------------------------------------------
        def _color_policy(self) -> dict:
            """Prefer frames whose colour has arrived (up to 0.2 s older); SAM requires colour."""
            if not self.use_color:
                return {}
            return {"prefer_color_ns": 200_000_000, "require_color": bool(self.config.sam_checkpoint)}

        def _frame(self):
            """(stamp_ns, header, depth [m], camera, rgb|None, notes) of the newest matched frame(s)."""
            frames = self.sync.matched(self.config.fusion_frames, **self._color_policy())
            if not frames:
                return None
            newest = frames[0]
            camera = conv.camera_from_msg(newest.info)
            depth = conv.depth_from_msg(newest.depth)
            notes = []
            if len(frames) > 1:
                same = [depth]
                for f in frames[1:]:
                    try:
                        d = conv.depth_from_msg(f.depth)
                        if d.shape == depth.shape and conv.camera_from_msg(f.info).same_as(camera):
                            same.append(d)
                    except PerceptionError:
                        continue
                if len(same) > 1:
                    depth = fuse_depth(same, self.config.fusion_min_valid)
                notes.append(f"fused {len(same)} frame(s)")
            rgb = None
            if newest.color is not None and self.use_color:
                try:
                    rgb = conv.color_from_msg(newest.color)
                    check_sizes(depth, camera, rgb)
                except PerceptionError as exc:
                    if self.config.sam_checkpoint:
                        raise
                    rgb = None
                    notes.append(f"colour image ignored ({exc.status}: {exc}); pixel prompts use depth pixels")
            frame_id = newest.depth.header.frame_id
            if self.tf_buffer is not None:
                self._update_extrinsics_from_tf(frame_id)
            ext = self.perception.extrinsics
            if frame_id and frame_id != ext.camera_frame and not self.warned_frame:
                self.warned_frame = True
                self.get_logger().warn(f"depth frame_id '{frame_id}' differs from the calibration's child frame "
                                       f"'{ext.camera_frame}'; using the calibration (depth registered to it)")
            return newest.stamp_ns, newest.depth.header, depth, camera, rgb, notes

        def process(self, prompt: str, publish: bool, raise_m: float = 0.0):
            """Segment the newest frame; returns (status, message, result|None, frame stamp|None,
            analysis|None). ``raise_m`` [m] > 0: with the workspace box's top raised by that much
            (not cached, not published)."""
            if self.perception is None:
                return self.setup_error.status, str(self.setup_error), None, None, None
            stamp, analysis = None, None
            publish = publish and raise_m <= 0
            try:
                latest = self.sync.latest(**self._color_policy())
                if latest is None:
                    d, i, c = self.sync.counts
                    need = " and colour image (Segment Anything needs colour)" if self.config.sam_checkpoint else ""
                    return "no_frame", (f"no depth frame with a matching camera_info{need} yet (buffered: {d} depth, "
                                        f"{i} camera_info, {c} colour)"), None, None, None
                stamp = latest.depth.header.stamp
                stamp_ns, header, depth, camera, rgb, notes = self._frame()
                if raise_m > 0:
                    analysis = self.perception.analyse(depth, camera, rgb, workspace=self.config.workspace.raised(raise_m))
                elif (self.last_analysis is not None and self.last_analysis[0] == stamp_ns
                        and self.config.fusion_frames == 1):
                    analysis = self.last_analysis[1]
                else:
                    self.last_analysis = None
                    analysis = self.perception.analyse(depth, camera, rgb)
                    self.last_analysis = (stamp_ns, analysis)
                result = self.perception.select(analysis, prompt)
                notes += result.notes
                message = (f"{result.num_objects} object(s); target {result.target} ({result.prompt.kind}, "
                           f"{result.segmentation}) with {result.points.shape[0]} points")
                if notes:
                    message += "; " + "; ".join(notes)
                if publish:
                    self.publish_result(header, result, message)
                return "ok", message, result, stamp, analysis
            except PerceptionError as exc:
                if publish:
                    self.publish_status(exc.status, str(exc))
                    self.publish_markers(None, exc.status)
                return exc.status, str(exc), None, stamp, analysis
            except Exception as exc:  # noqa: BLE001 - never die on a message
                self.get_logger().error(f"processing failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                                        throttle_duration_sec=2.0)
                if publish:
                    self.publish_status("internal_error", f"{type(exc).__name__}: {exc}")
                return "internal_error", f"{type(exc).__name__}: {exc}", None, stamp, None

        def on_timer(self) -> None:
            try:
                latest = self.sync.latest(**self._color_policy())
                if latest is None or latest.stamp_ns == self.last_processed_ns:
                    return
                self.last_processed_ns = latest.stamp_ns
                self.process(self.prompt, publish=True)
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"timer: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)

        def on_segment(self, request, response):
            try:
                raise_m = float(request.workspace_raise)
                if not np.isfinite(raise_m) or raise_m < 0:
                    raise_m = -1.0
                status, message, result, stamp, analysis = (
                    ("bad_request", f"workspace_raise must be a finite number >= 0 [m], got {request.workspace_raise}",
                     None, None, None) if raise_m < 0 else self.process(str(request.prompt), publish=True, raise_m=raise_m))
                response.success = status == "ok"
                response.status = status
                response.message = message
                header = self._out_header(stamp)  # stamp of the depth frame that was processed
                if result is not None:
                    response.object_cloud = conv.cloud_msg(header, result.points, result.normals)
                    response.num_objects = result.num_objects
                else:
                    response.object_cloud = conv.cloud_msg(header, np.zeros((0, 3)), np.zeros((0, 3)))
                    response.num_objects = 0
                if request.return_scene:
                    scene = analysis.candidate_points if analysis is not None else np.zeros((0, 3))
                    response.scene_cloud = conv.cloud_msg(header, scene)
            except Exception as exc:  # noqa: BLE001
                response.success, response.status = False, "internal_error"
                response.message = f"{type(exc).__name__}: {exc}"
            return response

        # -- outputs --------------------------------------------------------------------------
        def _out_header(self, stamp=None) -> Header:
            h = Header()
            h.frame_id = self.base_frame
            h.stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
            return h

        def publish_status(self, status: str, message: str, **extra) -> None:
            doc = {"status": status, "message": message, "time": time.time(), **extra}
            self.pub_status.publish(String(data=json.dumps(doc)))

        def publish_result(self, header, result, message: str) -> None:
            out = self._out_header(header.stamp)
            self.pub_object.publish(conv.cloud_msg(out, result.points, result.normals))
            self.pub_scene.publish(conv.cloud_msg(out, result.analysis.scene_cloud(self.config.scene_voxel)))
            polygon = result.table.polygon()
            self.pub_table.publish(conv.polygon_msg(out, polygon))
            self.publish_markers(result, "ok", out)
            t = result.table
            self.publish_status("ok", message, stamp_ns=int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec),
                                num_objects=result.num_objects, target=result.target, prompt=result.prompt.text,
                                segmentation=result.segmentation, points=int(result.points.shape[0]),
                                table={"normal": [float(v) for v in t.normal], "offset": float(t.offset),
                                       "inliers": t.inliers},
                                timings_ms={k: round(v * 1e3, 2) for k, v in result.timings.items()})

        def publish_markers(self, result, status: str, header: Header | None = None) -> None:
            header = header or self._out_header()
            markers = []

            def marker(mid: int, mtype: int, rgba, scale=(0.005, 0.005, 0.005)) -> Marker:
                m = Marker()
                m.header = header
                m.ns, m.id, m.type, m.action = NAMESPACE, mid, mtype, Marker.ADD
                m.pose.orientation.w = 1.0
                m.scale.x, m.scale.y, m.scale.z = (float(s) for s in scale)
                m.color = ColorRGBA(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]), a=float(rgba[3]))
                markers.append(m)
                return m

            def pt(p) -> Point:
                return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))

            if result is not None:
                poly = result.table.polygon()
                if len(poly) >= 3:
                    outline = marker(0, Marker.LINE_STRIP, (0.9, 0.9, 0.2, 1.0), (0.004, 0, 0))
                    outline.points = [pt(p) for p in np.vstack([poly, poly[:1]])]
                    surface = marker(1, Marker.TRIANGLE_LIST, (0.9, 0.9, 0.2, 0.25), (1, 1, 1))
                    centre = poly.mean(axis=0)
                    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
                        surface.points += [pt(centre), pt(a), pt(b)]
                c = result.cluster
                lo = result.points.min(axis=0) if len(result.points) else c.bbox_min
                hi = result.points.max(axis=0) if len(result.points) else c.bbox_max
                box = marker(2, Marker.LINE_LIST, (0.1, 0.9, 0.1, 1.0), (0.003, 0, 0))
                corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
                for i in range(8):
                    for j in range(i + 1, 8):
                        if np.count_nonzero(np.abs(corners[i] - corners[j]) > 1e-9) == 1:
                            box.points += [pt(corners[i]), pt(corners[j])]
                cents = marker(3, Marker.SPHERE_LIST, (0.2, 0.5, 1.0, 1.0), (0.015, 0.015, 0.015))
                cents.points = [pt(k.centroid) for k in result.analysis.clusters]
                normals = marker(4, Marker.LINE_LIST, (1.0, 0.3, 0.3, 1.0), (0.001, 0, 0))
                step = max(1, len(result.points) // 300)
                for p_, n_ in zip(result.points[::step], result.normals[::step]):
                    normals.points += [pt(p_), pt(p_ + 0.015 * n_)]
            else:
                for mid in range(5):
                    m = marker(mid, Marker.CUBE, (0, 0, 0, 0))
                    m.action = Marker.DELETE
            text = marker(5, Marker.TEXT_VIEW_FACING, (1, 1, 1, 1), (0, 0, 0.04))
            ws = self.config.workspace
            text.pose.position.x, text.pose.position.y = (float(v) for v in ws.center()[:2])
            text.pose.position.z = float(ws.max[2]) + 0.1
            text.text = (f"perception: {status}" if result is None else
                         f"perception: {result.num_objects} object(s), target {result.target}")
            self.pub_markers.publish(MarkerArray(markers=markers))

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = build_node(PerceptionNode)
    try:
        if node is not None:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
