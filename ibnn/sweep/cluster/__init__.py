"""The cluster a sweep runs on: the preflight checks of Ray and its nodes, the GPU share of a
trial (``resources``), the staging of a dataset for other nodes, the lease that keeps a second
driver off a sweep folder, and the provenance of the code that ran it."""
