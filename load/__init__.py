"""The load test (``make load``, ``python -m load``): players and live-feed viewers under locust, headless and
bounded, then every player's total checked exact on the board. ``locustfile`` is the load, ``run`` one step of it
(locust as a child process, CPU measured per process, totals checked), ``__main__`` the runner and its report."""
