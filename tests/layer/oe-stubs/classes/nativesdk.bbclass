# openembedded-core nativesdk.bbclass: the emulation builds the target variant only.
