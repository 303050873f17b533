"""Background jobs: the queue, job records, execution and the worker. See api.py."""

from compression.jobs.api import *  # noqa: F401,F403
from compression.jobs.api import __all__  # noqa: F401
