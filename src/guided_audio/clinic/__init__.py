"""A practice's batch: every client's library from one command, on this machine or a Dask
cluster (roster → jobs → runners → practice)."""
