# openembedded-core features_check.bbclass: nothing our recipes need at build time.
