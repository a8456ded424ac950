# openembedded-core packagegroup.bbclass: nothing our recipes need at build time.
