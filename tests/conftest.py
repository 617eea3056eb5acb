"""Shared pytest fixtures."""

import contextlib

import jax
import pytest


@contextlib.contextmanager
def x64_enabled():
  """Enables float64 in JAX inside the block, restoring the old setting."""
  old = jax.config.jax_enable_x64
  jax.config.update('jax_enable_x64', True)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', old)


@pytest.fixture
def x64():
  """Runs the test with float64 enabled in JAX."""
  with x64_enabled():
    yield
