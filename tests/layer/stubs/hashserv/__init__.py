"""Stub of BitBake's hashserv package: the bitbake-setup wheel ships bb without it, and
bb.siggen imports it. Nothing here is called by a parse."""
