"""Benchmarking: trtexec-compatible statistics (:mod:`.stats`), the timing harness over
any :class:`~tegra_ai.backend.base.Runner` (:mod:`.harness`), device state and power
(:mod:`.device_state`), reports (:mod:`.report`) and model x precision x batch suites
(:mod:`.suite`). ``model-benchmark`` is a thin CLI over these."""
