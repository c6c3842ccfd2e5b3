"""The budget of the route and kernel fuzz tests (test_conv_routes_fuzz.py,
test_pool_norm_fuzz.py, test_resample_fuzz.py): ``FUZZ``, hypothesis settings for 'ci'
(the default: a fixed, derandomized set of 40 draws per test, so CI is reproducible) or
'long' (``TINYDL_FUZZ_PROFILE=long``: 1,500 random draws per test)."""
import os

from hypothesis import HealthCheck, settings

PROFILES = {"ci": settings(max_examples=40, deadline=None, derandomize=True, database=None),
            "long": settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])}
FUZZ = PROFILES[os.environ.get("TINYDL_FUZZ_PROFILE", "ci")]
