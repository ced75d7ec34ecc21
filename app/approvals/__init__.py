"""Approving actions: the queue, the risk policy, signed links and the review pages, the checks
made just before a run, and the executor that runs what was approved."""
