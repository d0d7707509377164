"""The Docker-free local runtime: serves template.yaml's stack on this machine (``python -m local``).

It only reads template.yaml and calls handlers the way Lambda would; the product code never imports it.
"""
