"""Every state change of backups lives in this package, one module per step:

runs (start, take over, finish, orchestrate), scan (change detection), copying, verify,
backtrack (root cause and repair), restore, retention, intake (events and scan requests).
Modules doing S3 work keep it in worker threads that never touch the database; the thread
that drives a run records results in batches.
"""
