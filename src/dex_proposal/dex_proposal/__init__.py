"""dex_proposal: object point cloud -> ranked dexterous grasp proposals (pre-grasp, grasp, squeeze).

BODex-style bilevel synthesis in batched torch (CPU/CUDA):

* :mod:`dex_proposal.qp` -- lower level: batched friction-pyramid QP (ADMM) and the grasp energy
  with its envelope-theorem gradient;
* :mod:`dex_proposal.surface` -- oriented cloud -> signed-distance/normal grid (mirror completion
  of single views);
* :mod:`dex_proposal.hand` -- the hand as the optimiser sees it (actuated parameters, spheres,
  surface samples, palm frame);
* :mod:`dex_proposal.synthesis` -- upper level: energies, initialisation, coarse/fine/grasp stages;
* :mod:`dex_proposal.api` -- ``Proposer.propose(points, normals)`` -> ``ProposalResult`` with typed
  statuses;
* :mod:`dex_proposal.node` -- the ROS node; :mod:`dex_proposal.sim_eval` and
  :mod:`dex_proposal.bench` -- the MuJoCo floating-hand benchmark.
"""
