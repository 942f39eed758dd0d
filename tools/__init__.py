"""Scripts run by hand by Cerdas's developers (never at run time, never in CI)."""
