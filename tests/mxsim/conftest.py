import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fixed-seed numpy generator (tests stay deterministic)."""
    return np.random.default_rng(20240601)
