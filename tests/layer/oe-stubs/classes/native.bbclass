# openembedded-core native.bbclass: the emulation builds the target variant only.
