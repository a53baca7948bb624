"""The conformance kit on the Rosenbrock plugin: every check, every method, every backend."""

from autodiffeq.testing import conformance_suite

test_rosenbrock = conformance_suite(plugin="rosenbrock")
