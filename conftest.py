"""Root conftest: load the shared fixtures (broker, PostgreSQL, Redis) for every test suite."""

# The repository has a `platform/` folder; importing the standard library's module first keeps
# pytest's rootdir-based imports from shadowing it (asyncpg needs platform.uname()).
import platform  # noqa: F401

pytest_plugins = ["clientela.shared.testing"]
