"""What a benchmark ran on: the device's state (module, L4T, power mode, clocks,
temperatures) and its power during the run.

Jetson sources (all read under a ``root`` so tests point them at fixture trees):

- module ``/proc/device-tree/model``, L4T ``/etc/nv_tegra_release`` (through
  :mod:`tegra_ai.platform`);
- power mode: ``nvpmodel -q`` (first line ``NV Power Mode: NAME``, second the mode id),
  else ``/var/lib/nvpmodel/status`` (``pmode:0002``) named through ``/etc/nvpmodel.conf``
  (``< POWER_MODEL ID=2 NAME=15W >``);
- clocks: GPU devfreq ``/sys/class/devfreq/<gpu>/{cur,min,max}_freq`` (Hz), CPU
  ``/sys/devices/system/cpu/cpu*/cpufreq/scaling_{cur,min,max}_freq`` (kHz), EMC
  ``/sys/kernel/debug/bpmp/debug/clk/emc/rate`` (Hz, root only);
  jetson_clocks counts as on when every readable GPU and CPU clock has min == max;
- temperatures ``/sys/devices/virtual/thermal/thermal_zone*/{type,temp}`` (m°C);
- power rails: INA3221 (``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in<N>_label``,
  ``in<N>_input`` mV, ``curr<N>_input`` mA; JetPack 5+), INA3221x IIO (``rail_name_<N>``,
  ``in_power<N>_input`` mW; JetPack 4) and INA238 (``hwmon*/power1_input`` µW), or
  tegrastats lines (``VDD_GPU_SOC 2400mW/2400mW``; Xavier JetPack 4: ``GPU 0/0``).
  Channels labelled ``NC`` and the INA3221 ``sum of shunt voltages`` channel (7) are
  skipped. The total is ``VDD_IN`` (or ``POM_5V_IN``) when a module has that rail, else
  the sum of all rails (as jetson-stats does); the report says which.

Off Jetson: ``nvidia-smi --query-gpu=...`` (and ``-lms`` for power during the run).
A missing source gives ``None`` ("unknown" in reports), never an exception.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import threading
import time

from tegra_ai import platform

log = logging.getLogger("tegra_ai.bench.device_state")

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
GPU_DEVFREQ_HINTS = ("gv11b", "ga10b", "gb10b", "gp10b", "gpu")
NVIDIA_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm",
                     "temperature.gpu", "power.draw", "power.limit")


def _p(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00 \n\t")
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


# --- power rails (sysfs) ---------------------------------------------------------------

def find_rails(root: str = "/") -> list:
    """Power rails of the INA monitors under ``root``: [{"name", "kind", paths...}]."""
    rails = []
    for drv in ("ina3221", "ina238"):
        for hw in sorted(glob.glob(_p(root, f"/sys/bus/i2c/drivers/{drv}/*/hwmon/hwmon*"))):
            if drv == "ina238":
                label = _read(os.path.join(hw, "power1_label")) or _read(os.path.join(hw, "in1_label")) \
                    or f"ina238-{os.path.basename(os.path.dirname(os.path.dirname(hw)))}"
                rails.append({"name": label, "kind": "power_uw", "power": os.path.join(hw, "power1_input")})
                continue
            for label_path in sorted(glob.glob(os.path.join(hw, "in*_label"))):
                m = re.fullmatch(r"in(\d+)_label", os.path.basename(label_path))
                label = _read(label_path)
                if not m or not label or int(m.group(1)) == 7 or label.upper().startswith("NC") \
                        or "sum of shunt" in label.lower():
                    continue
                n = m.group(1)
                rails.append({"name": label, "kind": "v_i", "volt": os.path.join(hw, f"in{n}_input"),
                              "curr": os.path.join(hw, f"curr{n}_input")})
    for dev in sorted(glob.glob(_p(root, "/sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for name_path in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            n = name_path.rsplit("_", 1)[1]
            label = _read(name_path)
            if label:
                rails.append({"name": label, "kind": "power_mw", "power": os.path.join(dev, f"in_power{n}_input")})
    return rails


def read_rails_mw(rails: list) -> dict:
    """{rail name: milliwatts} for the rails readable now."""
    out = {}
    for r in rails:
        if r["kind"] == "v_i":
            v, i = _read_int(r["volt"]), _read_int(r["curr"])
            if v is not None and i is not None:
                out[r["name"]] = v * i / 1000.0
        else:
            p = _read_int(r["power"])
            if p is not None:
                out[r["name"]] = p / 1000.0 if r["kind"] == "power_uw" else float(p)
    return out


def total_mw(rails_mw: dict):
    """(total milliwatts, rule): VDD_IN / POM_5V_IN when present, else the sum."""
    for name in TOTAL_RAILS:
        if name in rails_mw:
            return rails_mw[name], name
    if not rails_mw:
        return None, None
    return sum(rails_mw.values()), "sum of " + "+".join(sorted(rails_mw))


# --- tegrastats --------------------------------------------------------------------------

_TS_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?\b")
_TS_GR3D = re.compile(r"GR3D_FREQ\s+(\d+)%(?:@\[?([\d,]+)\]?)?")
_TS_EMC = re.compile(r"EMC_FREQ\s+(\d+)%(?:@(\d+))?")
_TS_TEMP = re.compile(r"\b([A-Za-z0-9_]+)@(-?[\d.]+)C\b")
_TS_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}


def parse_tegrastats(line: str) -> dict:
    """One tegrastats line -> {"rails_mw", "gpu_load_pct", "gpu_freq_mhz", "emc_load_pct",
    "emc_freq_mhz", "temperatures_c"}; absent fields are None / empty."""
    rails = {}
    for name, now, _avg in _TS_RAIL.findall(line):
        if name not in _TS_NOT_RAILS:
            rails[name] = float(now)
    g = _TS_GR3D.search(line)
    e = _TS_EMC.search(line)
    temps = {k: float(v) for k, v in _TS_TEMP.findall(line) if float(v) > -200}  # -256C: sensor off
    gpu_freq = None
    if g and g.group(2):
        gpu_freq = max(int(f) for f in g.group(2).split(","))
    return {"rails_mw": rails, "gpu_load_pct": int(g.group(1)) if g else None, "gpu_freq_mhz": gpu_freq,
            "emc_load_pct": int(e.group(1)) if e else None,
            "emc_freq_mhz": int(e.group(2)) if e and e.group(2) else None, "temperatures_c": temps}


# --- nvidia-smi --------------------------------------------------------------------------

def _num(text: str):
    text = text.strip()
    if not text or text.startswith("[") or text.lower() in ("n/a", "[n/a]"):
        return None
    m = re.match(r"^-?[\d.]+", text)
    if m and m.group(0) == text.split()[0]:
        try:
            return float(m.group(0))
        except ValueError:
            return None
    return text


def parse_nvidia_smi(text: str, fields=NVIDIA_SMI_FIELDS) -> list:
    """``nvidia-smi --query-gpu=F1,F2 --format=csv,noheader,nounits`` -> [{field: value}]."""
    gpus = []
    for line in text.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(fields):
            continue
        gpus.append({f: (v if f in ("name", "driver_version", "pstate") else _num(v)) for f, v in zip(fields, values)})
    return gpus


def nvidia_smi_state(run=subprocess.run) -> dict | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = run([exe, "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS), "--format=csv,noheader,nounits"],
                  capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return None
    gpus = parse_nvidia_smi(res.stdout) if res.returncode == 0 else []
    return gpus[0] if gpus else None


# --- Jetson state ------------------------------------------------------------------------

def nvpmodel_mode(root: str = "/", run=None) -> dict | None:
    """{"id", "name"} of the current power mode, or None."""
    if run is not None or (root == "/" and shutil.which("nvpmodel")):
        try:
            res = (run or subprocess.run)(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
            m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", res.stdout or "")
            if m:
                return {"id": int(m.group(2)), "name": m.group(1)}
        except (OSError, subprocess.SubprocessError):
            pass
    status = _read(_p(root, "/var/lib/nvpmodel/status"))
    m = re.search(r"pmode:(\d+)", status or "")
    if not m:
        return None
    mode = int(m.group(1))
    conf = _read(_p(root, "/etc/nvpmodel.conf")) or ""
    name = None
    for mid, mname in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>", conf):
        if int(mid) == mode:
            name = mname
    return {"id": mode, "name": name}


def gpu_devfreq(root: str = "/") -> dict | None:
    for d in sorted(glob.glob(_p(root, "/sys/class/devfreq/*"))):
        base = os.path.basename(d)
        if any(h in base for h in GPU_DEVFREQ_HINTS):
            cur, lo, hi = (_read_int(os.path.join(d, f)) for f in ("cur_freq", "min_freq", "max_freq"))
            if cur is None:
                continue
            return {"node": base, "cur_mhz": cur / 1e6, "min_mhz": lo / 1e6 if lo else None,
                    "max_mhz": hi / 1e6 if hi else None}
    return None


def cpu_freqs(root: str = "/") -> list:
    out = []
    for d in sorted(glob.glob(_p(root, "/sys/devices/system/cpu/cpu[0-9]*/cpufreq")),
                    key=lambda p: int(re.search(r"cpu(\d+)/cpufreq", p).group(1))):
        cur, lo, hi = (_read_int(os.path.join(d, f"scaling_{f}_freq")) for f in ("cur", "min", "max"))
        if cur is not None:
            out.append({"cpu": int(re.search(r"cpu(\d+)/cpufreq", d).group(1)), "cur_mhz": cur / 1e3,
                        "min_mhz": lo / 1e3 if lo else None, "max_mhz": hi / 1e3 if hi else None})
    return out


def temperatures(root: str = "/") -> dict:
    temps = {}
    for z in sorted(glob.glob(_p(root, "/sys/devices/virtual/thermal/thermal_zone*"))):
        name, t = _read(os.path.join(z, "type")), _read_int(os.path.join(z, "temp"))
        if name and t is not None and t > -200000:
            temps[name] = t / 1000.0
    return temps


def jetson_clocks_state(gpu: dict | None, cpus: list) -> str:
    """"on" when every readable GPU/CPU clock is pinned (min == max), "off" when one is
    not, "unknown" when none can be read."""
    pinned = []
    if gpu and gpu.get("min_mhz") and gpu.get("max_mhz"):
        pinned.append(gpu["min_mhz"] == gpu["max_mhz"])
    pinned += [c["min_mhz"] == c["max_mhz"] for c in cpus if c.get("min_mhz") and c.get("max_mhz")]
    if not pinned:
        return "unknown"
    return "on" if all(pinned) else "off"


def collect(root: str = "/", dla_core: int | None = None, use_nvidia_smi: bool = True, run=None) -> dict:
    """The device state of a report. Jetson fields are None off a Jetson and vice versa."""
    dt_root = _p(root, platform.DT_ROOT)
    soc = platform.tegra_soc(dt_root)
    module = platform.jetson_module(dt_root)
    state = {"jetson": bool(soc or module), "module": module, "soc": soc[1] if soc else None,
             "l4t_release": platform.l4t_release(_p(root, platform.NV_TEGRA_RELEASE)),
             "nvpmodel": None, "jetson_clocks": "unknown", "gpu_freq_mhz": None, "gpu_freq_range_mhz": None,
             "emc_freq_mhz": None, "cpu_freq_mhz": None, "temperatures_c": {}, "dla_core": dla_core,
             "power_rails": [], "gpu": None}
    if state["jetson"]:
        state["nvpmodel"] = nvpmodel_mode(root, run)
        gpu = gpu_devfreq(root)
        cpus = cpu_freqs(root)
        state["jetson_clocks"] = jetson_clocks_state(gpu, cpus)
        if gpu:
            state["gpu_freq_mhz"] = gpu["cur_mhz"]
            state["gpu_freq_range_mhz"] = [gpu["min_mhz"], gpu["max_mhz"]]
        if cpus:
            state["cpu_freq_mhz"] = [c["cur_mhz"] for c in cpus]
        emc = _read_int(_p(root, "/sys/kernel/debug/bpmp/debug/clk/emc/rate"))
        state["emc_freq_mhz"] = emc / 1e6 if emc else None
        state["temperatures_c"] = temperatures(root)
        state["power_rails"] = [r["name"] for r in find_rails(root)]
    elif use_nvidia_smi:
        state["gpu"] = nvidia_smi_state(run or subprocess.run)
    return state


AFTER_FIELDS = ("gpu_freq_mhz", "emc_freq_mhz", "cpu_freq_mhz", "temperatures_c")


def after_run(before: dict, after: dict) -> dict:
    """The clocks and temperatures read again after the run (throttling shows here)."""
    out = {k: after.get(k) for k in AFTER_FIELDS}
    if after.get("gpu"):
        out["gpu"] = {k: after["gpu"].get(k) for k in ("clocks.sm", "clocks.mem", "temperature.gpu", "pstate")}
    return out


def clock_warnings(before: dict, after: dict, tolerance: float = 0.05) -> list:
    """A warning when the GPU clock moved by more than ``tolerance`` during the run
    (DVFS without jetson_clocks, thermal or power capping): the numbers then mix clocks."""
    pairs = [("GPU clock", before.get("gpu_freq_mhz"), after.get("gpu_freq_mhz"))]
    if before.get("gpu") and after.get("gpu"):
        pairs.append(("GPU SM clock", before["gpu"].get("clocks.sm"), after["gpu"].get("clocks.sm")))
    out = []
    for what, a, b in pairs:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and abs(b - a) / a > tolerance:
            out.append({"kind": "clocks-changed",
                        "message": f"{what} changed during the run ({a:g} -> {b:g} MHz): the results mix clock "
                                   "speeds; pin them (sudo jetson_clocks) or check for thermal throttling"})
    return out


# --- power during the run ----------------------------------------------------------------

class PowerSampler:
    """Samples power in a background thread between :meth:`start` and :meth:`stop`.

    ``source``: ``"sysfs"`` (INA rails under ``root``), ``"tegrastats"`` (its rail
    columns, streamed with ``--interval``), ``"nvidia-smi"`` (``power.draw`` streamed with
    ``-lms``) or ``"auto"`` (sysfs rails if any, else tegrastats, else nvidia-smi, else
    nothing)."""

    def __init__(self, source: str = "auto", root: str = "/", interval_s: float = 0.05):
        self.root, self.interval_s = root, interval_s
        self.rails = find_rails(root) if source in ("auto", "sysfs") else []
        if source == "auto":
            source = "sysfs" if self.rails else ("tegrastats" if shutil.which("tegrastats") else
                                                 "nvidia-smi" if shutil.which("nvidia-smi") else "none")
        self.source = source
        self.samples = []          # (monotonic seconds, total mW, {rail: mW})
        self.rule = None
        self._stop = threading.Event()
        self._thread = None
        self._proc = None

    def _command(self):
        ms = max(20, int(self.interval_s * 1000))
        if self.source == "tegrastats":
            return ["tegrastats", "--interval", str(max(ms, 100))]
        return ["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits", f"-lms={ms}", "-i", "0"]

    def start(self) -> "PowerSampler":
        if self.source == "sysfs" and self.rails:
            self._thread = threading.Thread(target=self._run_sysfs, daemon=True)
        elif self.source in ("nvidia-smi", "tegrastats"):
            try:
                self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                              text=True)
            except OSError as exc:
                log.debug("%s power sampling unavailable: %s", self.source, exc)
                self.source = "none"
                return self
            self._thread = threading.Thread(target=self._run_stream, daemon=True)
        if self._thread:
            self._thread.start()
        return self

    def _run_sysfs(self):
        while not self._stop.is_set():
            rails = read_rails_mw(self.rails)
            total, rule = total_mw(rails)
            if total is not None:
                self.rule = rule
                self.samples.append((time.monotonic(), total, rails))
            self._stop.wait(self.interval_s)

    def _parse_line(self, line):
        if self.source == "tegrastats":
            rails = parse_tegrastats(line)["rails_mw"]
            total, rule = total_mw(rails)
            return (total, rails, "tegrastats " + rule) if total is not None else None
        value = _num(line)
        if isinstance(value, float):
            return value * 1000.0, {"GPU (nvidia-smi power.draw)": value * 1000.0}, "nvidia-smi power.draw (GPU board)"
        return None

    def _run_stream(self):
        for line in self._proc.stdout:
            parsed = self._parse_line(line)
            if parsed is not None:
                total, rails, self.rule = parsed
                self.samples.append((time.monotonic(), total, rails))
            if self._stop.is_set():
                break

    def stop(self) -> dict | None:
        """{"source", "rule", "samples", "avg_w", "rails_avg_w"} or None when nothing was sampled."""
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return summarize_power(self.samples, self.source, self.rule)


def summarize_power(samples: list, source: str, rule: str | None) -> dict | None:
    if not samples:
        return None
    names = sorted({n for _, _, rails in samples for n in rails})
    rails_avg = {n: sum(r.get(n, 0.0) for _, _, r in samples) / len(samples) / 1000.0 for n in names}
    return {"source": source, "rule": rule, "samples": len(samples),
            "avg_w": sum(s[1] for s in samples) / len(samples) / 1000.0, "rails_avg_w": rails_avg}
