"""dex_proposal: object point cloud -> ranked dexterous grasp proposals (pre-grasp, grasp, squeeze).

Not implemented yet (see the grasp-proposal issue); the package exists so both install paths are complete.
"""
