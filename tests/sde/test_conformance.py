"""The SDE conformance kit (autodiffeq.testing.sde) on every built-in SDE solver x backend."""

from autodiffeq.testing import conformance_suite

test_sde_conformance = conformance_suite(plugin="sde")
