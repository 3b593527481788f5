"""Adversarial and random inputs shared by the mxsim bit-exact and property tests.

The plain generators live in ``mxsim/validate.py`` (the validation report needs them
without the test tree); this module re-exports them and adds hypothesis strategies.
"""

import numpy as np
from hypothesis import strategies as st

from mxsim.formats import ROUNDING_MODES
from mxsim.validate import (  # noqa: F401  (re-exported)
    DEFAULT_FORMATS,
    RANDOM_KINDS,
    SOLO_CASES,
    adversarial_batches,
    adversarial_cases,
    random_case,
)

BLOCKS = (16, 32, 7)

# float32 values hypothesis likes to find edge cases with (subnormals, max, NaN, Inf)
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
f32_finite = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def float32_arrays(draw, max_rows=3, max_len=70, finite=False, min_len=1):
    """2-D float32 arrays: either hypothesis floats element by element (edge values), or a
    seeded random distribution (realistic blocks), or a mix."""
    rows = draw(st.integers(1, max_rows))
    length = draw(st.integers(min_len, max_len))
    how = draw(st.sampled_from(["elements", "random", "mix"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if how == "random":
        return random_case(rng, rows, length, draw(st.sampled_from(RANDOM_KINDS)))
    elems = f32_finite if finite else f32
    vals = draw(st.lists(elems, min_size=rows * length, max_size=rows * length))
    a = np.array(vals, dtype=np.float32).reshape(rows, length)
    if how == "mix":
        r = random_case(rng, rows, length, "normal")
        mask = rng.random((rows, length)) < 0.8
        a = np.where(mask, r, a).astype(np.float32)
    return a


formats = st.sampled_from(DEFAULT_FORMATS)
roundings = st.sampled_from(ROUNDING_MODES)
blocks = st.sampled_from((1, 3, 7, 16, 32))

from hypothesis import HealthCheck, settings  # noqa: E402


def mx_settings(n):
    """Bounded, deterministic hypothesis settings for the mxsim tests (2 shared cores)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
