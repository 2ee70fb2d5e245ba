"""dex_bringup: the ``dexgrasp`` console command, launch files, graph description and the orchestrator."""
