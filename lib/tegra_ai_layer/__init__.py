"""Python helpers for the meta-tegra-ai layer (added with ``addpylib`` in conf/layer.conf).

Plain Python: nothing here imports ``bb``; functions take BitBake's data store ``d``
(anything with ``getVar``/``getVarFlag``/``getVarFlags``), so they are unit-tested
without BitBake as well as through the real data store.
"""

BBIMPORTS = ["compat", "engines", "prebuilt"]
