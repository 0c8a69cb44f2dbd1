"""The cache's benchmark: `python -m bench.run` (or `nox -s bench`); see `bench.run` for what it measures."""
