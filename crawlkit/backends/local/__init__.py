"""The local backend: memory and disk frontier, per-host Semaphores, the Manager seen store, the jobdir."""
