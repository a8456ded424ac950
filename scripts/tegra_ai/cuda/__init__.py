"""cuda-python access for tegra_ai: version compatibility (:mod:`.compat`) and small
driver-API helpers (:mod:`.driver`): context, device buffers, streams, events, errors."""
