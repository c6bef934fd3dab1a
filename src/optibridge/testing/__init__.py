"""Helpers that tests, benchmarks and the demo share to run pieces of the service on loopback."""
