# openembedded-core useradd.bbclass: its parse-time check (update_useradd_after_parse);
# the users and groups themselves are made in the rootfs at package-install time.
python __anonymous() {
    if bb.data.inherits_class('nativesdk', d) or bb.data.inherits_class('native', d):
        return
    packages = d.getVar('USERADD_PACKAGES')
    if not packages:
        bb.fatal("%s inherits useradd but doesn't set USERADD_PACKAGES" % d.getVar('FILE', False))
    for pkg in packages.split():
        if not d.getVar('USERADD_PARAM:%s' % pkg) and not d.getVar('GROUPADD_PARAM:%s' % pkg) \
                and not d.getVar('GROUPMEMS_PARAM:%s' % pkg):
            bb.fatal("%s inherits useradd but doesn't set USERADD_PARAM, GROUPADD_PARAM or GROUPMEMS_PARAM "
                     "for package %s" % (d.getVar('FILE', False), pkg))
}
