"""Model and engine options of ``tensorrt_engine.bbclass``: parsing, validation and commands.

A recipe lists its models in ``TEGRA_AI_MODELS`` and describes each one with a
variable ``TEGRA_AI_MODEL_<name>`` (the ONNX file) and varflags on it (the build
options)::

    TEGRA_AI_MODELS = "digits"
    TEGRA_AI_MODEL_digits = "digits.onnx"
    TEGRA_AI_MODEL_digits[precision] = "fp16"
    TEGRA_AI_MODEL_digits[shapes] = "input:1x1x8x8:8x1x8x8:32x1x8x8"

Everything here is plain Python and is called from the class's anonymous python
(parse time: ``parse_models`` raises ``ModelConfigError`` naming the variable) and
from its tasks (``write_requests``, then ``bundle_commands``).
"""

import os
import re
import shlex

from tegra_ai import spec as _spec
from tegra_ai.errors import TegraAIError

__all__ = [
    "ModelConfigError", "ModelSpec", "OPTION_FLAGS", "PRECISIONS",
    "parse_models", "bundle_commands", "write_requests", "request_file", "bundle_target", "compute_capability",
    "guess_trt_version", "short_trt_version", "check_builder", "remote_ensure_script", "builder_command",
    "builder_expectations", "verify_cache_args", "builder_cache_dir", "builder_lockfile", "ssh_auth_sock",
    "absolute_file_checksums", "model_files", "models_signature",
    "builder_is_local", "read_bool", "parse_size", "parse_shapes",
]

# The grammar of every option is tegra_ai.spec's (the package's one definition, on the
# path through addpylib in conf/layer.conf): the class accepts exactly what
# `tensorrt-optimize bundle` accepts.
PRECISIONS = _spec.PRECISIONS

# varflag -> one-line description (also the list of accepted varflags)
OPTION_FLAGS = {
    "precision": "auto, fp32, fp16, int8 or best (default TEGRA_AI_ENGINE_PRECISION)",
    "shapes": "optimization profiles, whitespace-separated; each NAME:DIMS or NAME:MIN:OPT:MAX, inputs joined by ','",
    "workspace": "builder workspace limit in bytes, or with a K/M/G/T suffix (e.g. 512M, 1.5G)",
    "dla_core": "DLA core index to build for instead of the GPU (0 or 1 on Xavier and AGX Orin)",
    "gpu_fallback": "with dla_core: let layers the DLA cannot run fall back to the GPU (0/1)",
    "opt_level": "builder optimization level 0..5",
    "calibration": "INT8 calibration cache file (relative paths are in UNPACKDIR, i.e. from SRC_URI)",
    "qdq": "1 when the ONNX is already quantized (Q/DQ nodes): INT8 without calibration",
    "strongly_typed": "build a strongly typed network (0/1)",
    "timing_cache": "TensorRT timing cache file to start from (relative paths are in UNPACKDIR)",
    "preprocess": "preprocessing spec JSON (tegra_ai PreprocessSpec; relative paths are in UNPACKDIR)",
    "contexts": "execution contexts that may run a dynamic-shape engine at once (pipeline streams, runtime "
                "workers): one set of optimization profiles each (default 1)",
}

# Flags BitBake itself may put on any variable; never treated as model options.
_BITBAKE_FLAGS = {
    "doc", "vardeps", "vardepsexclude", "vardepvalue", "vardepvalueexclude", "export",
    "unexport", "func", "python", "noexec", "dirs", "cleandirs", "deps", "depends",
    "rdepends", "file-checksums", "filename", "lineno", "type", "defaultval", "immediate",
    "_defaultval", "_content", "content",
}

_TRUE = ("1", "yes", "true", "on", "y")
_FALSE = ("0", "no", "false", "off", "n", "")


class ModelConfigError(ValueError):
    """A model option is wrong; the message starts with the variable (and flag) it came from."""


class ModelSpec(object):
    """One model of a recipe, with validated options (paths still relative when they were)."""

    def __init__(self, name, onnx, precision, shapes=(), workspace=None, dla_core=None,
                 gpu_fallback=False, opt_level=None, calibration=None, qdq=False,
                 strongly_typed=None, timing_cache=None, preprocess=None, contexts=1):
        self.name = name
        self.contexts = contexts
        self.onnx = onnx
        self.precision = precision
        self.shapes = list(shapes)
        self.workspace = workspace
        self.dla_core = dla_core
        self.gpu_fallback = gpu_fallback
        self.opt_level = opt_level
        self.calibration = calibration
        self.qdq = qdq
        self.strongly_typed = strongly_typed
        self.timing_cache = timing_cache
        self.preprocess = preprocess

    def files(self):
        """Input files the bundle step reads (model, calibration, timing cache, preprocess spec)."""
        return [p for p in (self.onnx, self.calibration, self.timing_cache, self.preprocess) if p]

    def to_dict(self):
        """The model's validated variables, file names as written (relative to UNPACKDIR):
        what the bundle task's signature holds (``models_signature``). ``qdq`` only
        relaxes validation and is not part of the build request."""
        return {"name": self.name, "onnx": self.onnx, "precision": self.precision, "shapes": list(self.shapes),
                "workspace": self.workspace, "dla_core": self.dla_core, "gpu_fallback": self.gpu_fallback,
                "opt_level": self.opt_level, "calibration": self.calibration, "strongly_typed": self.strongly_typed,
                "timing_cache": self.timing_cache, "preprocess": self.preprocess, "contexts": self.contexts}

    def build_request(self, srcdir):
        """The :class:`tegra_ai.spec.BuildRequest` of this model, constructed once here
        (the calibration cache is hashed, so it runs after do_unpack); relative file
        names are looked up in ``srcdir``."""
        def path(p):
            return p if not p or os.path.isabs(p) else os.path.join(srcdir, p)
        return _spec.BuildRequest.from_request(
            path(self.onnx), timing_cache=path(self.timing_cache), calibration_cache=path(self.calibration),
            precision=self.precision, shapes=list(self.shapes), workspace=self.workspace, dla_core=self.dla_core,
            gpu_fallback=self.gpu_fallback, opt_level=self.opt_level, strongly_typed=self.strongly_typed or None,
            contexts=self.contexts)

    def request_json(self, srcdir, reqdir):
        """:meth:`build_request` as the request file in ``reqdir`` holds it
        (``BuildRequest.to_dict``): files given relative to UNPACKDIR become relative to
        ``reqdir`` (``bundle --request`` resolves them from the file's directory), so the
        file does not name TMPDIR; absolute ones stay as they are."""
        request = self.build_request(srcdir)
        absolute = set(p for p in self.files() if os.path.isabs(p))
        return request.map_files(lambda p: p if p in absolute else os.path.relpath(p, reqdir)).to_dict()

    def bundle_args(self, request_file, outdir, srcdir, target=None, check=True):
        """argv (without the program) of ``tensorrt-optimize bundle`` for this model: the
        request file holds every build option and build input; the rest is what only the
        bundle step takes (name, preprocessing spec, the preflight's target)."""
        args = ["bundle", "--request", request_file, "--out", outdir, "--name", self.name]
        if self.preprocess:
            args += ["--preprocess", self.preprocess if os.path.isabs(self.preprocess)
                     else os.path.join(srcdir, self.preprocess)]
        if target:
            args += ["--target", target]
        if not check:
            args.append("--no-check")
        return args

    def __repr__(self):
        return "ModelSpec(%r, %r, %r)" % (self.name, self.onnx, self.precision)


def read_bool(value, where):
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ModelConfigError("%s: %r is not a boolean (use 1 or 0)" % (where, value))


def _spec_call(where, fn, *args):
    """Run a tegra_ai.spec parser, re-raising its error as ModelConfigError naming ``where``."""
    try:
        return fn(*args)
    except TegraAIError as exc:
        raise ModelConfigError("%s: %s" % (where, exc))


def parse_size(value, where):
    """'268435456', '256M', '1.5G', '512MiB' -> bytes (tegra_ai.spec.parse_size)."""
    return _spec_call(where, _spec.parse_size, (value or "").strip())


def parse_shapes(text, where):
    """Whitespace-separated profiles -> list of profile strings (validated by tegra_ai.spec)."""
    profiles = (text or "").split()
    for p in profiles:
        _spec_call(where, _spec.parse_profile, p)
    return profiles


def _relpath_ok(value, where):
    v = value.strip()
    if not v or any(c.isspace() for c in v):
        raise ModelConfigError("%s: %r is not a file name" % (where, value))
    if not os.path.isabs(v) and ".." in v.split("/"):
        raise ModelConfigError("%s: %r leaves UNPACKDIR; list the file in SRC_URI instead" % (where, value))
    return v


def model_var(name):
    return "TEGRA_AI_MODEL_" + name


def parse_model(d, name):
    """Validated ``ModelSpec`` of model ``name``; raises ``ModelConfigError`` naming the variable."""
    var = model_var(name)
    try:
        _spec.check_model_name(name)
    except TegraAIError:
        raise ModelConfigError("TEGRA_AI_MODELS: %r is not a valid model name (letters, digits, '_', '.', '+', '-')"
                               % name)
    onnx = (d.getVar(var) or "").strip()
    if not onnx:
        raise ModelConfigError("%s is not set: give the ONNX file of model %r (a SRC_URI file name or an absolute path)"
                               % (var, name))
    onnx = _relpath_ok(onnx, var)
    if not onnx.lower().endswith(".onnx"):
        raise ModelConfigError("%s: %r is not an .onnx file" % (var, onnx))

    flags = d.getVarFlags(var) or {}
    unknown = sorted(f for f in flags if f not in OPTION_FLAGS and f not in _BITBAKE_FLAGS and not f.startswith("_"))
    if unknown:
        raise ModelConfigError("%s[%s]: unknown option; known options: %s"
                               % (var, unknown[0], ", ".join(sorted(OPTION_FLAGS))))

    def flag(f):
        v = d.getVarFlag(var, f)
        return None if v is None else str(v).strip()

    def where(f):
        return "%s[%s]" % (var, f)

    precision = flag("precision")
    precision_where = where("precision")
    if precision is None or precision == "":
        precision = (d.getVar("TEGRA_AI_ENGINE_PRECISION") or "fp16").strip()
        precision_where = "TEGRA_AI_ENGINE_PRECISION"
    if precision not in PRECISIONS:  # tegra_ai.spec.parse_precision's rule, worded for the variable
        raise ModelConfigError("%s: %r is not one of %s" % (precision_where, precision, ", ".join(PRECISIONS)))

    shapes = parse_shapes(flag("shapes"), where("shapes"))

    workspace = flag("workspace")
    if workspace in (None, ""):
        workspace = (d.getVar("TEGRA_AI_ENGINE_WORKSPACE") or "").strip()
        ws_where = "TEGRA_AI_ENGINE_WORKSPACE"
    else:
        ws_where = where("workspace")
    workspace = parse_size(workspace, ws_where) if workspace else None

    dla = flag("dla_core")
    dla_core = _spec_call(where("dla_core"), _spec.parse_dla_core, dla)
    gpu_fallback = read_bool(flag("gpu_fallback"), where("gpu_fallback"))
    if gpu_fallback and dla_core is None:
        raise ModelConfigError("%s: gpu_fallback only applies with %s[dla_core]" % (where("gpu_fallback"), var))

    lvl = flag("opt_level")
    opt_level = _spec_call(where("opt_level"), _spec.parse_opt_level, lvl)

    qdq = read_bool(flag("qdq"), where("qdq"))
    calibration = flag("calibration") or None
    if calibration:
        calibration = _relpath_ok(calibration, where("calibration"))
    if calibration and qdq:
        raise ModelConfigError("%s: a Q/DQ model (%s[qdq] = \"1\") carries its own scales; drop the calibration cache"
                               % (where("calibration"), var))
    if calibration and precision not in ("int8", "best"):
        raise ModelConfigError("%s: a calibration cache needs precision int8 or best, not %s"
                               % (where("calibration"), precision))
    if precision == "int8" and not (calibration or qdq):
        raise ModelConfigError("%s: int8 needs calibration data: set %s[calibration] to a calibration cache, "
                               "or %s[qdq] = \"1\" for a quantized (Q/DQ) ONNX" % (precision_where, var, var))
    if qdq and precision not in ("int8", "best"):
        raise ModelConfigError("%s: a Q/DQ model builds with precision int8 or best, not %s"
                               % (where("qdq"), precision))

    st = flag("strongly_typed")
    strongly_typed = read_bool(st, where("strongly_typed")) if st not in (None, "") else None
    if strongly_typed and calibration:
        raise ModelConfigError("%s: a strongly typed network takes its types from the ONNX; it cannot use "
                               "a calibration cache" % where("strongly_typed"))

    timing_cache = flag("timing_cache") or None
    if timing_cache:
        timing_cache = _relpath_ok(timing_cache, where("timing_cache"))
    preprocess = flag("preprocess") or None
    if preprocess:
        preprocess = _relpath_ok(preprocess, where("preprocess"))
        if not preprocess.endswith(".json"):
            raise ModelConfigError("%s: %r is not a .json preprocessing spec" % (where("preprocess"), preprocess))

    contexts = _spec_call(where("contexts"), _spec.parse_contexts, flag("contexts"))

    return ModelSpec(name, onnx, precision, shapes=shapes, workspace=workspace, dla_core=dla_core,
                     gpu_fallback=gpu_fallback, opt_level=opt_level, calibration=calibration, qdq=qdq,
                     strongly_typed=strongly_typed, timing_cache=timing_cache, preprocess=preprocess,
                     contexts=contexts)


def parse_models(d):
    """All models of the recipe, validated. Raises ``ModelConfigError`` (message names the variable)."""
    names = (d.getVar("TEGRA_AI_MODELS") or "").split()
    if not names:
        raise ModelConfigError("TEGRA_AI_MODELS is empty: list the models this recipe bundles "
                               "(and set TEGRA_AI_MODEL_<name> for each)")
    if len(set(names)) != len(names):
        raise ModelConfigError("TEGRA_AI_MODELS: a model is listed twice in %r" % " ".join(names))
    return [parse_model(d, n) for n in names]


def request_file(d, name, reqdir=None):
    """Where the class writes model ``name``'s build request (TEGRA_AI_REQUEST_DIR/<name>.json)."""
    return os.path.join(reqdir or d.getVar("TEGRA_AI_REQUEST_DIR"), name + ".json")


def write_requests(d, srcdir=None, reqdir=None):
    """Write every model's build request (:meth:`ModelSpec.request_json`) into ``reqdir``,
    emptied first; returns the files. Run by the bundle task before ``bundle_commands``
    (do_compile[prefuncs]): the files are hashed there. Raises ``ModelConfigError``
    naming the variable (e.g. a calibration cache SRC_URI did not provide)."""
    import json
    import shutil

    srcdir = srcdir or d.getVar("TEGRA_AI_SRCDIR")
    reqdir = reqdir or d.getVar("TEGRA_AI_REQUEST_DIR")
    specs = parse_models(d)
    shutil.rmtree(reqdir, ignore_errors=True)
    os.makedirs(reqdir)
    written = []
    for spec in specs:
        data = _spec_call(model_var(spec.name), spec.request_json, srcdir, reqdir)
        path = request_file(d, spec.name, reqdir)
        with open(path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        written.append(path)
    return written


def bundle_commands(d, tool="tensorrt-optimize", srcdir=None, outdir=None, reqdir=None):
    """Shell lines (one per model) that add each model to the bundle with
    ``tensorrt-optimize bundle --request FILE`` (the files ``write_requests`` writes)."""
    srcdir = srcdir or d.getVar("TEGRA_AI_SRCDIR")
    outdir = outdir or d.getVar("TEGRA_AI_BUNDLE_DIR")
    target = (d.getVar("TEGRA_AI_BUNDLE_TARGET") or "").strip() or None
    check = read_bool(d.getVar("TEGRA_AI_ONNX_CHECK") or "0", "TEGRA_AI_ONNX_CHECK")
    lines = []
    for spec in parse_models(d):
        argv = [tool] + spec.bundle_args(request_file(d, spec.name, reqdir), outdir, srcdir, target=target,
                                         check=check)
        lines.append(" ".join(shlex.quote(a) for a in argv))
    return "\n    ".join(lines)


def models_signature(d):
    """The models and all their options as one canonical string (for the task signature).

    BitBake hashes a variable's value but not its varflags, where the options live; file
    names stay as written (relative to UNPACKDIR), so the build directory does not
    enter the signature (the files' contents do, through SRC_URI's checksums).
    '' when the models are invalid (parsing fails elsewhere).
    """
    import json
    try:
        specs = parse_models(d)
    except ModelConfigError:
        return ""
    return json.dumps([spec.to_dict() for spec in specs], sort_keys=True, separators=(",", ":"))


def model_files(d):
    """Relative input files of all models (for checks that they were fetched)."""
    return [f for spec in parse_models(d) for f in spec.files()]


# --- target description ---------------------------------------------------

def compute_capability(cuda_arch):
    """meta-tegra's TEGRA_CUDA_ARCHITECTURE ('72', '87', '110') -> compute capability ('7.2', '8.7', '11.0')."""
    a = (cuda_arch or "").strip()
    if not a.isdigit() or len(a) < 2:
        return ""
    return "%s.%s" % (a[:-1], a[-1])


def _vkey(v):
    return [int(x) if x.isdigit() else x for x in re.split(r"[.\-+]", v)]


def short_trt_version(v, parts=3):
    """'10.3.0.30-1' -> '10.3.0' (parts=3) or '10.3' (parts=2); '' for unknown."""
    v = (v or "").strip().rstrip("%").split("-")[0].split("+")[0]
    nums = [x for x in v.split(".") if x.isdigit()]
    if len(nums) < 2:
        return ""
    return ".".join(nums[:parts])


def guess_trt_version(d):
    """The TensorRT version the image will contain, for manifests and engine verification.

    In order: PREFERRED_VERSION_tensorrt-core; TENSORRT_TARBALL_VERSION when this layer's
    tarball recipe provides tensorrt-core; else the newest tensorrt-core recipe in BBFILES
    (meta-tegra ships exactly one per branch). '' when none is found.
    """
    pref = (d.getVar("PREFERRED_VERSION_tensorrt-core") or "").strip()
    if pref:
        return short_trt_version(pref, 4) or pref
    if (d.getVar("PREFERRED_PROVIDER_tensorrt-core") or "") == "tensorrt-tarball":
        return short_trt_version(d.getVar("TENSORRT_TARBALL_VERSION"), 4)
    from tegra_ai_layer import compat
    versions = [v for v in compat.layer_recipe_versions(d, "tensorrt-core") if v]
    if not versions:
        return ""
    return short_trt_version(sorted(versions, key=_vkey)[-1], 4)


def bundle_target(trt_version):
    """``--target`` for ``tensorrt-optimize bundle``: 'trt-10.3' for TensorRT 10.3.x, '' when unknown."""
    short = short_trt_version(trt_version, 2)
    return "trt-" + short if short else ""


# --- image-build-time engine builder ---------------------------------------

def builder_is_local(builder):
    return (builder or "").strip() == "local"


def check_builder(d):
    """Parse-time check of TEGRA_AI_ENGINE_BUILDER; returns the command prefix ('' = build on first boot).

    'local' means the build host itself; it is only accepted on an aarch64 build host
    (a Jetson building its own image), because an x86 build host cannot build Jetson
    engines: TensorRT engines are specific to the GPU (compute capability), the TensorRT
    version and the platform they were built on.
    """
    builder = (d.getVar("TEGRA_AI_ENGINE_BUILDER") or "").strip()
    if not builder:
        return ""
    if builder_is_local(builder):
        build_arch = d.getVar("BUILD_ARCH") or ""
        if build_arch != "aarch64":
            raise ModelConfigError(
                "TEGRA_AI_ENGINE_BUILDER = \"local\" needs a Jetson as the build host, but BUILD_ARCH is %s: "
                "an x86 build host cannot build Jetson engines. Point TEGRA_AI_ENGINE_BUILDER at a reference "
                "Jetson (e.g. \"ssh root@jetson\") or leave it empty to build the engines on first boot."
                % (build_arch or "unknown"))
        return "sh -c"
    if not compute_capability(d.getVar("TEGRA_CUDA_ARCHITECTURE")) and not (d.getVar("TEGRA_AI_COMPUTE_CAPABILITY") or "").strip():
        raise ModelConfigError("TEGRA_AI_ENGINE_BUILDER is set but the target's compute capability is unknown: "
                               "set TEGRA_AI_COMPUTE_CAPABILITY (e.g. 8.7 for Orin)")
    if not (d.getVar("TEGRA_AI_TRT_VERSION") or "").strip():
        raise ModelConfigError("TEGRA_AI_ENGINE_BUILDER is set but the image's TensorRT version is unknown: "
                               "set TEGRA_AI_TRT_VERSION (e.g. 10.3.0)")
    cache = (d.getVar("TEGRA_AI_ENGINE_BUILDER_CACHE") or "").strip()
    if cache and (not cache.startswith("/") or re.search(r"[\s'\"$`\\]", cache)):
        raise ModelConfigError("TEGRA_AI_ENGINE_BUILDER_CACHE = %r: an absolute path on the builder, without "
                               "spaces, quotes, $ or backslashes (empty: a temporary cache per build)" % cache)
    module = d.getVar("TEGRA_AI_ENGINE_BUILDER_MODULE") or ""
    if module.strip() and not re.match(r"^p\d{4}-\d{4}$", module.strip()):
        raise ModelConfigError("TEGRA_AI_ENGINE_BUILDER_MODULE = %r: the module's part number, e.g. p3767-0005 "
                               "(nvidia,p3767-0005 in the builder's /proc/device-tree/compatible)" % module)
    return builder


def builder_command(d):
    """The builder pipeline stage: command prefix + quoted remote script ('' when no builder)."""
    prefix = check_builder(d)
    if not prefix:
        return ""
    script = remote_ensure_script(d.getVar("TEGRA_AI_ENGINE_BUILDER_TOOL") or "tensorrt-optimize",
                                  cache=builder_cache_dir(d), expect=builder_expectations(d))
    return "%s %s" % (prefix, shlex.quote(script))


def verify_cache_args(d):
    """``tensorrt-optimize verify-cache`` options: the image's facts (those that are known)."""
    trt, cc, l4t, module = builder_expectations(d)
    args = []
    for opt, value in (("--trt-version", trt), ("--compute-capability", cc), ("--l4t-release", l4t),
                       ("--module", module)):
        if value:
            args += [opt, value]
    return " ".join(shlex.quote(a) for a in args)


def builder_expectations(d):
    """What the builder must report before it builds: (TensorRT X.Y.Z, compute capability, L4T release, module).

    Empty entries are not checked. The same values are in the engine task's signature
    (through the variables they come from), so a BSP or TensorRT update rebuilds the
    engines and nothing else does.
    """
    return (short_trt_version(d.getVar("TEGRA_AI_TRT_VERSION")),
            (d.getVar("TEGRA_AI_COMPUTE_CAPABILITY") or "").strip(),
            (d.getVar("TEGRA_AI_L4T_VERSION") or "").strip(),
            (d.getVar("TEGRA_AI_ENGINE_BUILDER_MODULE") or "").strip())


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def builder_cache_dir(d):
    """The builder's persistent cache for this recipe and BSP release:
    <TEGRA_AI_ENGINE_BUILDER_CACHE>/<MACHINE>/l4t-<L4T release>/<bundle>.

    One folder per L4T release: ``ensure --prune`` in one release's folder never keeps or
    returns engines of another release (after a BSP upgrade the image gets only engines
    of its own release), and an image of the previous release still finds its engines in
    its own folder."""
    root = (d.getVar("TEGRA_AI_ENGINE_BUILDER_CACHE") or "").strip()
    if not root:
        return ""
    release = "l4t-" + ((d.getVar("TEGRA_AI_L4T_VERSION") or "").strip() or "unknown")
    parts = [_UNSAFE.sub("_", (d.getVar(v) or "x").strip() or "x") for v in ("MACHINE",)]
    parts += [_UNSAFE.sub("_", release), _UNSAFE.sub("_", (d.getVar("TEGRA_AI_BUNDLE") or "x").strip() or "x")]
    return "/".join([root.rstrip("/")] + parts)


def builder_lockfile(d):
    """BitBake lock file for one builder: its engine tasks run one at a time (one GPU, limited memory)."""
    import hashlib
    builder = (d.getVar("TEGRA_AI_ENGINE_BUILDER") or "").strip()
    tag = hashlib.sha256(builder.encode()).hexdigest()[:12]
    return "%s/tegra-ai-engine-builder-%s.lock" % ((d.getVar("TMPDIR") or "/tmp").rstrip("/"), tag)


def ssh_auth_sock(d):
    """The ssh-agent socket of the shell that started BitBake (tasks get a cleaned environment).

    Taken from BB_ORIGENV, as BitBake's fetcher does for git over ssh; the value is
    excluded from task signatures (openembedded-core's BB_BASEHASH_IGNORE_VARS).
    """
    value = d.getVar("SSH_AUTH_SOCK") or ""
    origenv = d.getVar("BB_ORIGENV", False)
    if not value and origenv is not None and hasattr(origenv, "getVar"):
        value = origenv.getVar("SSH_AUTH_SOCK") or ""
    return value


def absolute_file_checksums(d):
    """``file-checksums`` entries for model inputs given by absolute path (SRC_URI files are tracked by the fetcher)."""
    try:
        files = model_files(d)
    except ModelConfigError:
        return ""
    return " ".join("%s:%s" % (f, os.path.exists(f)) for f in files if os.path.isabs(f))


# Run by the builder with python3 before it builds: its facts against the image's.
# Argument order: TensorRT X.Y.Z, compute capability, L4T release, module; '' = not checked.
_PROBE = (
    'import sys\n'
    'from tegra_ai import platform\n'
    'want = dict(zip(("TensorRT", "compute capability", "L4T release", "module"), sys.argv[1:5]))\n'
    'facts = platform.detect()\n'
    'try:\n'
    '    from tegra_ai.trt import compat\n'
    '    trt = compat.load()[1].version_string\n'
    'except Exception as e:\n'
    '    trt = "none (%s)" % e\n'
    'have = dict(zip(want, (trt, facts and facts.compute_capability, facts and facts.l4t_release,\n'
    '                       facts and facts.module)))\n'
    'def same(k):\n'
    '    h = str(have[k] or "")\n'
    '    return not want[k] or h == want[k] or (k == "TensorRT" and h.startswith(want[k] + "."))\n'
    'bad = ["%s %s (the image has %s)" % (k, have[k], want[k]) for k in want if not same(k)]\n'
    'if bad:\n'
    '    sys.stderr.write("builder mismatch: it has " + "; ".join(bad) + "\\n")\n'
    '    sys.exit(3)\n'
)


# Run by the builder with python3 after ensure: the files of the engines ensure chose for
# this bundle (from its JSON summary) with their sidecars and the marker of their model
# folder (argv[3]; verify-cache reads only folders ensure made), relative to the cache,
# one per line for tar -T.
_ENGINE_LIST = (
    'import json, os, sys\n'
    'summary, cache = json.load(open(sys.argv[1])), os.path.realpath(sys.argv[2])\n'
    'for m in summary.get("models", []):\n'
    '    if m.get("engine"):\n'
    '        rel = os.path.relpath(os.path.realpath(m["engine"]), cache)\n'
    '        print(os.path.join(os.path.dirname(rel), sys.argv[3]))\n'
    '        print(rel)\n'
    '        print(rel + ".json")\n'
)


def remote_ensure_script(tool="tensorrt-optimize", cache="", expect=None):
    """POSIX shell run by the builder: bundle tar on stdin -> engine cache tar on stdout.

    ``expect`` (TensorRT X.Y.Z, compute capability, L4T release, module): checked on the
    builder before anything is built; a mismatch exits 3 with one line on stderr.
    ``cache``: the builder's persistent cache for this bundle and release (an unchanged
    model is a cache hit, never rebuilt); engines of models no longer in the bundle are
    pruned there. Empty: a temporary cache. Only the engines (and sidecars) ensure chose
    for this bundle come back, never the rest of the cache. Builds are serialized on the
    builder with flock where it exists (one GPU; several build hosts may share one
    builder). Written without ``${`` so BitBake never expands anything in it; progress
    goes to stderr.
    """
    parts = ["set -e", "w=$(mktemp -d)", "trap 'rm -rf \"$w\"' EXIT", "mkdir \"$w/b\"",
             "tar -C \"$w/b\" -xf -"]
    if expect:
        parts.append("python3 -c %s %s" % (shlex.quote(_PROBE), " ".join(shlex.quote(v or "") for v in expect)))
    if cache:
        parts += ["c=%s" % shlex.quote(cache), "mkdir -p \"$c\"",
                  "if command -v flock >/dev/null 2>&1; then exec 9>\"$(dirname \"$(dirname \"$(dirname \"$c\")\")\")/.lock\"; "
                  "flock 9; fi",
                  "%s ensure --manifest \"$w/b\" --cache \"$c\" --prune unlisted --json > \"$w/s.json\""
                  % shlex.quote(tool)]
    else:
        parts += ["c=\"$w/e\"", "mkdir \"$c\"",
                  "%s ensure --manifest \"$w/b\" --cache \"$c\" --json > \"$w/s.json\"" % shlex.quote(tool)]
    from tegra_ai.cache.store import MODEL_MARKER

    parts += ["cat \"$w/s.json\" >&2",
              "python3 -c %s \"$w/s.json\" \"$c\" %s > \"$w/list\"" % (shlex.quote(_ENGINE_LIST),
                                                                      shlex.quote(MODEL_MARKER)),
              "tar -C \"$c\" -cf - -T \"$w/list\""]
    script = "; ".join(parts)
    assert "${" not in script
    return script
