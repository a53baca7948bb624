from autodiffeq.testing import conformance_suite

test_conformance = conformance_suite(plugin="example_heun")
