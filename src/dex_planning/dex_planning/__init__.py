"""dex_planning: grasp proposals -> IK -> collision-free, time-parameterised arm trajectory (cuRobo or CPU).

Not implemented yet (see the planning issue); the package exists so both install paths are complete.
"""
