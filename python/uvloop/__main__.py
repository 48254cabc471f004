"""`python -m uvloop script.py [args]` / `python -m uvloop -m module [args]`.

Runs the script as `python script.py` would, with uvloop's event loop policy installed.
"""

import os
import runpy
import sys

from . import EventLoopPolicy
from . import _asyncio_private as _private

USAGE = "usage: python -m uvloop (script.py | -m module) [args ...]"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if _private.set_event_loop_policy is None:
        print("python -m uvloop needs asyncio's event loop policies, which this Python has "
              "not; use uvloop.run() in the program", file=sys.stderr)
        return 2
    # Through asyncio's silent setter where the public one warns (3.14 on): the warning would
    # be about this module's code, not the user's.
    _private.set_event_loop_policy(EventLoopPolicy())
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
