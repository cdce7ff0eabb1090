"""Fault, bad-input, security and concurrency suites (issue #7)."""
