"""`make stack`: Fleet's production processes on one machine, each its own process, under a small supervisor.

stack/config.py turns environment variables into the processes' environment, stack/services.py lists
the processes with their readiness probes, stack/supervisor.py starts, watches and stops them, and
stack/s3.py runs SeaweedFS (shared with the test suite). The end-to-end test (tests/stack/) starts the
stack with the same code.
"""
