"""Developer scripts run with ``python -m scripts.<name>`` (e.g. ``make demo``)."""
