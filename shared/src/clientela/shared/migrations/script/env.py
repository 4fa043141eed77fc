"""Alembic environment of every Clientela service; the caller supplies connection and options."""

from alembic import context

from clientela.shared.migrations import run_environment

run_environment(context)
