-- Lease the next request of a host to a node; drops the host from `hosts` once its queue is empty.
-- KEYS: none (built from P). ARGV: P, node, host. Returns {lease id, pickled request}, or false
-- when the host's queue is empty.
return lease_next(ARGV[1], ARGV[2], ARGV[3])
