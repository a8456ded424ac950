# openembedded-core systemd.bbclass: nothing our recipes need at build time.
systemd_system_unitdir = "${nonarch_base_libdir}/systemd/system"
# systemd_populate_packages puts each SYSTEMD_SERVICE unit in its package.
FILES:${PN} += "${@' '.join('${systemd_system_unitdir}/' + s for s in (d.getVar('SYSTEMD_SERVICE:' + d.getVar('PN')) or '').split())}"
