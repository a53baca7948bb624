"""Every conformance check on every built-in solver x available backend (the same kit a
third-party plugin runs on itself)."""

from autodiffeq.testing import conformance_suite

test_builtin_explicit = conformance_suite(plugin="explicit")
