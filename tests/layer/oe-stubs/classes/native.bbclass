# openembedded-core native.bbclass: only the override the recipes use.
CLASSOVERRIDE = "class-native"
