# openembedded-core allarch.bbclass: nothing our recipes need at build time.
