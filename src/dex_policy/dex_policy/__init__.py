"""dex_policy: goal-conditioned squeeze-and-lift policy (teacher, distilled student, training, evaluation).

Not implemented yet; the package exists so both install paths are complete.
"""
