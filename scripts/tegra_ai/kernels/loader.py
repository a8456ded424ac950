"""Find or build the machine code of a kernel module (``<module>.cu`` beside this file)
for the current GPU, and load it.

Order of preference:

1. a prebuilt image ``$TEGRA_AI_KERNEL_DIR/<module>.sm_XY.cubin`` or
   ``/usr/share/tegra-ai/kernels/<module>.sm_XY.cubin`` (the Yocto recipe builds these
   with nvcc for ``TEGRA_CUDA_ARCHITECTURE``; a target then needs no NVRTC);
2. the on-disk cache ``$XDG_CACHE_HOME/tegra-ai/kernels/<module>-<key>.cubin`` (or
   ``.ptx``), keyed by source hash, target architecture, NVRTC version and options;
3. NVRTC: CUBIN for ``sm_XY``; PTX for the newest ``compute_XY`` it knows when it is
   older than the GPU (the driver then compiles the PTX).

Path and key logic is plain Python so it is tested without a GPU.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tegra_ai.errors import TegraAIError

KERNEL_SOURCE_DIR = Path(__file__).resolve().parent
SYSTEM_KERNEL_DIR = Path("/usr/share/tegra-ai/kernels")
# Options every build uses. --fmad=true is nvcc's default too: the NMS IoU must round
# like torchvision's nvcc-built kernel.
NVRTC_OPTIONS = ("--std=c++14", "--fmad=true")
CACHE_FORMAT = 1

MODULES = ("preprocess", "nms")


def source_path(module: str) -> Path:
    if module not in MODULES:
        raise TegraAIError(f"unknown kernel module {module!r}; known: {', '.join(MODULES)}")
    return KERNEL_SOURCE_DIR / f"{module}.cu"


def read_source(module: str) -> bytes:
    try:
        return source_path(module).read_bytes()
    except OSError as exc:
        raise TegraAIError(f"kernel source {source_path(module)} is missing: {exc.strerror}",
                           hint="reinstall meta-tegra-ai; the .cu files ship with the package") from None


def arch_tag(cc) -> str:
    """(8, 7) -> 'sm_87'."""
    major, minor = cc
    return f"sm_{int(major)}{int(minor)}"


def prebuilt_dirs(env=None) -> list:
    env = os.environ if env is None else env
    dirs = []
    if env.get("TEGRA_AI_KERNEL_DIR"):
        dirs.append(Path(env["TEGRA_AI_KERNEL_DIR"]))
    dirs.append(SYSTEM_KERNEL_DIR)
    return dirs


def prebuilt_candidates(module: str, cc, env=None) -> list:
    name = f"{module}.{arch_tag(cc)}.cubin"
    return [d / name for d in prebuilt_dirs(env)]


def find_prebuilt(module: str, cc, env=None):
    for path in prebuilt_candidates(module, cc, env):
        if path.is_file():
            return path
    return None


def cache_dir(env=None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "tegra-ai" / "kernels"


def cache_key(source: bytes, target: str, nvrtc_version, options=NVRTC_OPTIONS) -> str:
    h = hashlib.sha256()
    for part in (f"format={CACHE_FORMAT}", f"target={target}",
                 "nvrtc=" + ".".join(str(v) for v in nvrtc_version), "options=" + " ".join(options)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(hashlib.sha256(source).digest())
    return h.hexdigest()


def cache_path(module: str, key: str, target: str, env=None) -> Path:
    suffix = "cubin" if target.startswith("sm_") else "ptx"
    return cache_dir(env) / f"{module}-{key[:32]}.{suffix}"


def choose_target(cc, supported_archs) -> str:
    """'sm_XY' if this NVRTC can emit machine code for the GPU, else 'compute_XY' PTX
    for the newest architecture it knows that is not newer than the GPU."""
    want = int(cc[0]) * 10 + int(cc[1])
    archs = sorted(int(a) for a in supported_archs)
    if want in archs:
        return f"sm_{want}"
    older = [a for a in archs if a <= want]
    if not older:
        raise TegraAIError(f"this NVRTC supports no architecture up to sm_{want} (it knows {archs})",
                           hint="install a prebuilt kernel image or a matching NVRTC")
    return f"compute_{older[-1]}"


# --- NVRTC -----------------------------------------------------------------------------

def _nvrtc_check(result, what):
    from tegra_ai.cuda import compat

    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        nv = compat.nvrtc()
        try:
            _, msg = nv.nvrtcGetErrorString(err)
            msg = msg.decode() if isinstance(msg, bytes) else str(msg)
        except Exception:  # noqa: BLE001
            msg = str(err)
        raise TegraAIError(f"{what} failed: {msg}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def nvrtc_version() -> tuple:
    from tegra_ai.cuda import compat

    return tuple(int(v) for v in _nvrtc_check(compat.nvrtc().nvrtcVersion(), "nvrtcVersion"))


def nvrtc_supported_archs() -> list:
    from tegra_ai.cuda import compat

    nv = compat.nvrtc()
    if hasattr(nv, "nvrtcGetSupportedArchs"):
        return [int(a) for a in _nvrtc_check(nv.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")]
    return [72, 87]  # NVRTC 11.0/11.1 cannot tell; JetPack 5 ships 11.4+, so rarely used


def compile_nvrtc(source: bytes, name: str, target: str, options=NVRTC_OPTIONS) -> bytes:
    """Compile ``source``; CUBIN for ``sm_XY`` targets, PTX (NUL-terminated) otherwise."""
    from tegra_ai.cuda import compat

    nv = compat.nvrtc()
    prog = _nvrtc_check(nv.nvrtcCreateProgram(source, name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={target}".encode()] + [o.encode() for o in options]
        result = nv.nvrtcCompileProgram(prog, len(opts), opts)
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            size = _nvrtc_check(nv.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            _nvrtc_check(nv.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            raise TegraAIError(f"NVRTC could not compile {name} for {target}:\n"
                               + log.decode(errors="replace").strip())
        if target.startswith("sm_"):
            size = _nvrtc_check(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
            image = b" " * size
            _nvrtc_check(nv.nvrtcGetCUBIN(prog, image), "nvrtcGetCUBIN")
        else:
            size = _nvrtc_check(nv.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
            image = b" " * size
            _nvrtc_check(nv.nvrtcGetPTX(prog, image), "nvrtcGetPTX")
        return bytes(image)
    finally:
        nv.nvrtcDestroyProgram(prog)


@dataclass
class ImageSource:
    """Where a loaded module's code came from (for logs and tests)."""

    kind: str  # "prebuilt", "cache" or "nvrtc"
    path: Path | None
    target: str


def build_image(module: str, cc, env=None, use_prebuilt: bool = True):
    """(image bytes, ImageSource) for ``module`` on a GPU of compute capability ``cc``."""
    prebuilt = find_prebuilt(module, cc, env) if use_prebuilt else None
    if prebuilt is not None:
        return prebuilt.read_bytes(), ImageSource("prebuilt", prebuilt, arch_tag(cc))
    source = read_source(module)
    target = choose_target(cc, nvrtc_supported_archs())
    version = nvrtc_version()
    path = cache_path(module, cache_key(source, target, version), target, env)
    try:
        return path.read_bytes(), ImageSource("cache", path, target)
    except OSError:
        pass
    image = compile_nvrtc(source, f"{module}.cu", target)
    try:
        from tegra_ai.util.atomic import atomic_write_bytes

        atomic_write_bytes(path, image)
    except TegraAIError:
        pass  # a read-only cache costs a compile per process, nothing worse
    return image, ImageSource("nvrtc", path, target)


class KernelModule:
    """A loaded module; ``module.function(name)`` returns a ``CUfunction``."""

    def __init__(self, name: str, image: bytes, source: ImageSource):
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check

        self.name, self.source = name, source
        self._drv = compat.driver()
        self.handle = check(self._drv.cuModuleLoadData(image), f"loading kernel module {name} ({source.kind})")
        self._functions = {}

    def function(self, name: str):
        from tegra_ai.cuda.driver import check

        fn = self._functions.get(name)
        if fn is None:
            fn = check(self._drv.cuModuleGetFunction(self.handle, name.encode()), f"kernel {name}")
            self._functions[name] = fn
        return fn


_modules = {}
_modules_lock = threading.Lock()


def load_module(module: str, ordinal: int = 0) -> KernelModule:
    """Load ``module`` for device ``ordinal`` once per process."""
    from tegra_ai.cuda.driver import compute_capability, ensure_context

    ensure_context(ordinal)
    with _modules_lock:
        key = (module, ordinal)
        if key not in _modules:
            cc = compute_capability(ordinal)
            image, source = build_image(module, cc)
            try:
                _modules[key] = KernelModule(module, image, source)
            except TegraAIError:
                if source.kind != "prebuilt":
                    raise
                # A prebuilt image for another toolkit/driver: fall back to NVRTC.
                image, source = build_image(module, cc, use_prebuilt=False)
                _modules[key] = KernelModule(module, image, source)
        return _modules[key]
