# meta-tegra classes/l4t_version.bbclass (scarthgap)
L4T_VERSION ?= "36.4.4"
