"""Root conftest: load the shared fixtures (broker, PostgreSQL, Redis) for every test suite."""

pytest_plugins = ["clientela.shared.testing"]
