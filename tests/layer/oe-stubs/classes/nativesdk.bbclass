# openembedded-core nativesdk.bbclass: only the override the recipes use.
CLASSOVERRIDE = "class-nativesdk"
