# meta-tegra-community provides python3-cuda (cuda-python) on scarthgap and
# master; its scarthgap-l4t-r35.x branch has none, so add it only where a
# recipe exists.
RDEPENDS:${PN}-benchmark:append:class-target = " ${@tegra_ai_layer.compat.recipe_available(d, 'python3-cuda')}"
RDEPENDS:${PN}:append:class-target = " ${@tegra_ai_layer.compat.recipe_available(d, 'python3-cuda')}"
