"""TensorRT preprocessing plugin: C++/CUDA sources (built by CMake / the Yocto recipe)
and Python helpers to put it in a model (:func:`insert_preprocess_plugin`) and load
the built library (:func:`load_plugin_library`)."""

from tegra_ai.plugin.graphsurgeon import (  # noqa: F401
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    insert_preprocess_plugin,
    load_plugin_library,
    plugin_attributes,
)
