"""The command line, the top layer with the dashboard: ``main`` (run, train, check, methods, unpack,
examples), ``jobs`` (submit, jobs, status, cancel, logs, worker) and ``outdir`` (``run --out``)."""
