"""``make bench``: how fast and how far the simulator goes (issue "Speed and scale").

Run ``python -m bench --help``. Every figure is wall time measured in this process (or in a
child process for the fleet, so that each fleet size starts from a clean heap), printed as a
table and written as JSON (``reports/bench.json``). See ``docs/performance.md``.
"""
