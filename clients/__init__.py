"""Clients of the stack's APIs for the e2e tests, the benchmarks and the demo (the product code never imports these)."""
