"""Running several models at once: :class:`.engine.ModelRuntime` (worker threads with
their own runners, contexts and streams, bounded queues, futures), ensembles described
in a file (:mod:`.ensemble`) and the streaming pipeline (:mod:`.pipeline`)."""

from tegra_ai.runtime.engine import ModelRuntime

__all__ = ["ModelRuntime"]
