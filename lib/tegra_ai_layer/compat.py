"""Differences between the release series the layer supports (scarthgap .. master)."""

import glob
import os
import re

__all__ = ["mirror_keys", "mirror_keys_words", "unpackdir", "recipe_available", "layer_recipe_versions", "project_version",
           "proprietary_license", "license_all", "state_directory_line", "appends_if_recipe", "check_paths",
           "check_service_settings"]


def unpackdir(d):
    """Where the fetcher unpacks SRC_URI: ``UNPACKDIR`` (styhead and later) or ``WORKDIR`` (scarthgap).

    Master refuses ``S = "${WORKDIR}"``; scarthgap has no ``UNPACKDIR``. Recipes write
    ``S = "${@tegra_ai_layer.compat.unpackdir(d)}/<subdir>"`` to serve both.
    """
    return d.getVar("UNPACKDIR") or d.getVar("WORKDIR")


def _bbfiles_globs(d):
    return (d.getVar("BBFILES") or "").split()


_VERSIONS_MEMO = {}


def layer_recipe_versions(d, pn):
    """Versions of recipe ``pn`` found through the configured BBFILES globs (no BitBake cache needed).

    Used at parse time to ask "does any layer in this build provide pn?" (for example
    python3-cuda, which meta-tegra-community has on scarthgap and master but not on
    scarthgap-l4t-r35.x). Results are memoized per BBFILES value.
    """
    globs = tuple(_bbfiles_globs(d))
    key = (globs, pn)
    if key not in _VERSIONS_MEMO:
        found = []
        pattern = re.compile(r"^%s(?:_(?P<pv>[^/]+))?\.bb$" % re.escape(pn))
        for g in globs:
            if not g.endswith(".bb"):
                continue
            # restrict the glob to this recipe name to keep it cheap
            head = os.path.dirname(g)
            for path in glob.glob(os.path.join(head, pn + "*.bb")):
                m = pattern.match(os.path.basename(path))
                if m:
                    found.append(m.group("pv") or "")
        _VERSIONS_MEMO[key] = sorted(set(found))
    return list(_VERSIONS_MEMO[key])


def recipe_available(d, pn, value=None):
    """``value`` (default ``pn``) when a recipe named ``pn`` is in BBFILES, else ''."""
    return (value if value is not None else pn) if layer_recipe_versions(d, pn) else ""


_PROJECT_VERSION = re.compile(r'^\s*version\s*=\s*"([^"]+)"', re.MULTILINE)


def project_version(layerdir, default="0.0.0"):
    """``version`` of [project] in the repository's pyproject.toml (the layer root), else ``default``."""
    try:
        with open(os.path.join(layerdir or "", "pyproject.toml")) as f:
            text = f.read()
    except OSError:
        return default
    project = text.split("[project]", 1)[-1].split("\n[", 1)[0] if "[project]" in text else ""
    m = _PROJECT_VERSION.search(project)
    return m.group(1) if m else default


def proprietary_license(d):
    """'Proprietary' up to scarthgap; 'LicenseRef-Proprietary' (SPDX syntax, as meta-tegra master uses) after."""
    series = (d.getVar("LAYERSERIES_CORENAMES") or "").split()
    return "Proprietary" if "scarthgap" in series else "LicenseRef-Proprietary"


def license_all(d, *names):
    """A package under every license of ``names``: 'A & B' up to scarthgap, whose oe.license
    knows only the operators & | ( ); 'A AND B' after (SPDX operators: master's
    oe.license.check_license_format warns that '&' "is using an old syntax"), as meta-tegra
    master writes it ("MIT AND LicenseRef-Proprietary")."""
    series = (d.getVar("LAYERSERIES_CORENAMES") or "").split()
    return (" & " if "scarthgap" in series else " AND ").join(names)


def state_directory_line(d, var="TEGRA_AI_ENGINE_CACHE"):
    """The unit's ``StateDirectory=`` line when ``var`` is below ``${localstatedir}/lib``, else a comment.

    systemd creates a StateDirectory before the service starts (and keeps it writable
    under ProtectSystem=strict); a cache elsewhere (e.g. /data on a read-only rootfs)
    is created by tmpfiles.d and opened with ReadWritePaths instead.
    """
    path = (d.getVar(var) or "").rstrip("/")
    base = (d.getVar("localstatedir") or "/var").rstrip("/") + "/lib/"
    if path.startswith(base) and len(path) > len(base):
        return "StateDirectory=" + path[len(base):]
    # no "," or "&": the recipe puts this line into the unit with sed
    return "# %s is outside %s: tmpfiles.d creates it (no StateDirectory)" % (var, base.rstrip("/"))


def appends_if_recipe(d, pn, pattern, enabled_by=None):
    """``pattern`` (bbappends for recipe ``pn``) when a layer in BBLAYERS has a ``pn`` recipe, else ''.

    For conf/layer.conf's BBFILES: a bbappend without its recipe is an error
    ("No recipes available for"), and BBFILES_DYNAMIC can only ask whether a layer
    is present, not whether this branch of it has the recipe (meta-tegra-community
    has onnx on master only). ``enabled_by``: a configuration variable that must be
    "1" as well (an append that changes another layer's recipe only on request).
    """
    if enabled_by and (d.getVar(enabled_by) or "").strip() != "1":
        return ""
    for layer in (d.getVar("BBLAYERS") or "").split():
        if glob.glob(os.path.join(layer, "recipes-*", "*", pn + "_*.bb")):
            return pattern
    return ""


PATH_VARS = ("TEGRA_AI_MODELS_DIR", "TEGRA_AI_ENGINE_CACHE", "TEGRA_AI_ENGINE_SEED")
# what the service recipe's sed and systemd's unit syntax cannot carry in a path
_PATH_BAD = re.compile(r"[\s,&\\'\"%$;]")


def check_paths(d):
    """Parse-time check of the on-device locations; raises ValueError naming the variable."""
    values = {}
    for var in PATH_VARS:
        v = (d.getVar(var) or "").strip()
        if not v.startswith("/") or v.rstrip("/") == "":
            raise ValueError("%s = %r: give an absolute path on the device (not /), e.g. /data/tegra-ai/engines"
                             % (var, v))
        if _PATH_BAD.search(v):
            raise ValueError("%s = %r: the path may not contain spaces, quotes or any of , & %% $ ; \\" % (var, v))
        values[var] = v.rstrip("/")
    cache = values["TEGRA_AI_ENGINE_CACHE"]
    for ro in ("TEGRA_AI_MODELS_DIR", "TEGRA_AI_ENGINE_SEED"):
        if cache == values[ro] or cache.startswith(values[ro] + "/") or values[ro].startswith(cache + "/"):
            raise ValueError("TEGRA_AI_ENGINE_CACHE = %r overlaps %s = %r: the cache is written on the device, "
                             "the models and seed engines are read-only parts of the image" % (cache, ro, values[ro]))
    return values


_TIMESPAN = re.compile(r"^(infinity|\d+(us|ms|s|sec|m|min|h|d|w)?( *\d+(us|ms|s|sec|m|min|h|d|w))*)$")


_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def check_service_settings(d):
    """Parse-time check of tegra-ai-engines' settings; raises ValueError naming the variable."""
    for var in ("TEGRA_AI_ENGINES_TIMEOUT", "TEGRA_AI_ENGINES_RETRY_WINDOW"):
        v = (d.getVar(var) or "").strip()
        if not _TIMESPAN.match(v):
            raise ValueError("%s = %r: a systemd time span (e.g. 90min, 6h, infinity)" % (var, v))
    for var, lo in (("TEGRA_AI_MODEL_TIMEOUT", 1), ("TEGRA_AI_ENGINES_RETRIES", 0), ("TEGRA_AI_MIRROR_TIMEOUT", 1),
                    ("TEGRA_AI_MIRROR_TOTAL_TIMEOUT", 1)):
        v = (d.getVar(var) or "").strip()
        if not v.isdigit() or int(v) < lo:
            raise ValueError("%s = %r: a whole number%s" % (var, v, " of seconds, at least 1" if lo else ""))
    user = d.getVar("TEGRA_AI_ENGINES_USER") or ""
    # useradd(8)'s portable names (no root: the service runs without privileges)
    if not _USER.match(user) or user == "root":
        raise ValueError("TEGRA_AI_ENGINES_USER = %r: a system user name other than root (lower case letters, "
                         "digits, '-' and '_', at most 32, not starting with a digit or '-')" % user)


def mirror_keys(d):
    """Checked public-key files of TEGRA_AI_MIRROR_PUBKEYS ([] without mirrors).

    Raises ValueError naming the variable: mirrors without keys (the service would exit 2
    at every boot), a missing file, or a file that is not an Ed25519 public key (a private
    key above all: it must never reach an image)."""
    mirrors = (d.getVar("TEGRA_AI_ENGINE_MIRRORS") or "").split()
    keys = (d.getVar("TEGRA_AI_MIRROR_PUBKEYS") or "").split()
    if not mirrors:
        return []
    for url in mirrors:
        if not url.startswith(("https://", "file://", "http://")):
            raise ValueError("TEGRA_AI_ENGINE_MIRRORS: %r is not an https://, http:// or file:// URL" % url)
    if not keys:
        raise ValueError("TEGRA_AI_ENGINE_MIRRORS is set but TEGRA_AI_MIRROR_PUBKEYS is empty: give the Ed25519 "
                         "public key(s) (*.pub from 'tensorrt-optimize mirror-keygen') the engines are signed with")
    from tegra_ai.cache.signing import public_key_id
    from tegra_ai.errors import TegraAIError

    for k in keys:
        if not os.path.isabs(k) or not os.path.isfile(k):
            raise ValueError("TEGRA_AI_MIRROR_PUBKEYS: %r is not an existing file (give absolute paths)" % k)
        try:
            public_key_id(k)
        except TegraAIError as e:
            raise ValueError("TEGRA_AI_MIRROR_PUBKEYS: %s" % e)
    return keys


def mirror_keys_words(d):
    """Space-separated key paths for shell (checked at parse time by mirror_keys)."""
    return " ".join((d.getVar("TEGRA_AI_MIRROR_PUBKEYS") or "").split())
