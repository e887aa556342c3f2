"""A plugin whose import fails, as a half-installed third-party package does."""

import harness_no_such_dependency  # noqa: F401
