"""Host and process metrics (CPU, memory, disk I/O and usage per mount, network, uptime) as OTel
observable instruments.

Names, units and attributes follow the OpenTelemetry semantic conventions for ``system.*`` and
``process.*`` metrics, so the collector files them under ``system_performance``. Values are read
with psutil inside the callbacks, i.e. on the metric reader's thread at each collection (never on
an application thread); a failing read is skipped, never raised into the SDK.

Opt in with ``configure(host_metrics=True)``, with ``start(meter_provider)`` on any MeterProvider,
or, under ``opentelemetry-instrument``, with ``OTEL_TELEMETRY_HOST_METRICS=true`` (the
``opentelemetry_post_instrument`` hook ``instrumentation.post_instrument`` then starts them on the
global MeterProvider). Needs ``psutil`` (extras ``hostmetrics`` or ``instrument``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger("otel_telemetry.sdk.hostmetrics")

ENV = "OTEL_TELEMETRY_HOST_METRICS"
SCOPE = "otel_telemetry.sdk.hostmetrics"
_SKIP_DISKS = ("loop", "ram", "zram")
_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Read-only images (snaps) are always 100 % full: noise, not a disk filling up.
_SKIP_FS = frozenset(("squashfs", "iso9660", "udf"))


def _safe(fn: Callable[[], Iterable[Observation]]) -> Callable[[CallbackOptions], Iterator[Observation]]:
    def callback(options: CallbackOptions) -> Iterator[Observation]:
        try:
            return iter(list(fn()))
        except Exception:
            log.debug("host metric callback %s failed", getattr(fn, "__name__", fn), exc_info=True)
            return iter(())

    return callback


class HostMetrics:
    """The registered instruments and the state their callbacks keep between collections."""

    def __init__(self, meter_provider: Any = None, *, system: bool = True, process: bool = True) -> None:
        import psutil  # the optional dependency: fail here, with a clear message, not per callback

        self._psutil = psutil
        provider = meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
        from .._version import __version__

        self.meter = provider.get_meter(SCOPE, __version__)
        self._lock = threading.Lock()
        self._proc = psutil.Process()
        self._cpus = self._available_cpus()
        self._last_cpu = psutil.cpu_times()
        self._last_proc = (time.monotonic(), self._proc.cpu_times())
        self.instruments: list[Any] = []
        if system:
            self._register_system()
        if process:
            self._register_process()

    def _available_cpus(self) -> int:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, self._psutil.cpu_count() or 1)

    def _add(self, kind: str, name: str, fn: Callable[[], Iterable[Observation]], unit: str, desc: str) -> None:
        create = {
            "gauge": self.meter.create_observable_gauge,
            "counter": self.meter.create_observable_counter,
            "updown": self.meter.create_observable_up_down_counter,
        }[kind]
        self.instruments.append(create(name, callbacks=[_safe(fn)], unit=unit, description=desc))

    # -- system ----------------------------------------------------------------------------------
    def _register_system(self) -> None:
        self._add("counter", "system.cpu.time", self._cpu_time, "s", "Seconds each CPU mode has run (all CPUs)")
        self._add("gauge", "system.cpu.utilization", self._cpu_utilization, "1",
                  "Share of CPU time per mode since the previous collection, 0..1 (all CPUs)")
        self._add("updown", "system.cpu.logical.count", self._cpu_count, "{cpu}", "Logical CPUs")
        self._add("updown", "system.memory.usage", self._memory_usage, "By", "Memory in use, by state")
        self._add("updown", "system.memory.limit", self._memory_limit, "By", "Total memory")
        self._add("gauge", "system.memory.utilization", self._memory_utilization, "1",
                  "Share of memory, by state, 0..1")
        self._add("counter", "system.disk.io", self._disk_io, "By", "Bytes read and written, by device")
        self._add("counter", "system.disk.operations", self._disk_ops, "{operation}",
                  "Disk reads and writes, by device")
        self._add("updown", "system.filesystem.usage", self._fs_usage, "By",
                  "Filesystem space used, free and reserved, per mount")
        self._add("gauge", "system.filesystem.utilization", self._fs_utilization, "1",
                  "Share of filesystem space used, per mount, 0..1")
        self._add("updown", "system.filesystem.limit", self._fs_limit, "By", "Filesystem size, per mount")
        self._add("counter", "system.network.io", self._net_io, "By",
                  "Bytes transmitted and received, by interface")
        self._add("counter", "system.network.packet.count", self._net_packets, "{packet}",
                  "Packets transmitted and received, by interface")
        self._add("gauge", "system.uptime", self._uptime, "s", "Seconds since the host booted")

    def _cpu_time(self) -> Iterator[Observation]:
        t = self._psutil.cpu_times()
        for mode in _CPU_MODES:
            if hasattr(t, mode):
                yield Observation(getattr(t, mode), {"cpu.mode": mode})

    def _cpu_utilization(self) -> Iterator[Observation]:
        now = self._psutil.cpu_times()
        with self._lock:
            last, self._last_cpu = self._last_cpu, now
        deltas = {m: max(0.0, getattr(now, m) - getattr(last, m)) for m in _CPU_MODES if hasattr(now, m)}
        total = sum(deltas.values())
        if total <= 0:
            return
        for mode, d in deltas.items():
            yield Observation(min(1.0, d / total), {"cpu.mode": mode})

    def _cpu_count(self) -> Iterator[Observation]:
        yield Observation(self._psutil.cpu_count() or 1)

    def _memory(self) -> tuple[int, dict[str, int]]:
        vm = self._psutil.virtual_memory()
        states = {"used": vm.used, "free": vm.free}
        for state in ("cached", "buffers"):
            if hasattr(vm, state):
                states[state] = getattr(vm, state)
        return vm.total, states

    def _memory_usage(self) -> Iterator[Observation]:
        _, states = self._memory()
        for state, n in states.items():
            yield Observation(n, {"system.memory.state": state})

    def _memory_limit(self) -> Iterator[Observation]:
        yield Observation(self._psutil.virtual_memory().total)

    def _memory_utilization(self) -> Iterator[Observation]:
        total, states = self._memory()
        if total <= 0:
            return
        for state, n in states.items():
            yield Observation(min(1.0, max(0.0, n / total)), {"system.memory.state": state})

    def _disks(self) -> dict[str, Any]:
        per = self._psutil.disk_io_counters(perdisk=True) or {}
        return {dev: c for dev, c in per.items() if not dev.startswith(_SKIP_DISKS)}

    def _disk_io(self) -> Iterator[Observation]:
        for dev, c in self._disks().items():
            yield Observation(c.read_bytes, {"system.device": dev, "disk.io.direction": "read"})
            yield Observation(c.write_bytes, {"system.device": dev, "disk.io.direction": "write"})

    def _disk_ops(self) -> Iterator[Observation]:
        for dev, c in self._disks().items():
            yield Observation(c.read_count, {"system.device": dev, "disk.io.direction": "read"})
            yield Observation(c.write_count, {"system.device": dev, "disk.io.direction": "write"})

    def _filesystems(self) -> Iterator[tuple[dict[str, str], Any]]:
        """(attributes, psutil usage) per mounted disk filesystem. ``/`` is always included (in a
        container it is an overlay, which psutil's physical-only list leaves out). Runs on the
        metric reader's thread: a hung network mount delays that thread, never the app."""
        seen: set[str] = set()
        parts = [p for p in self._psutil.disk_partitions(all=False) if p.fstype not in _SKIP_FS]
        if not any(p.mountpoint == "/" for p in parts):
            parts.append(None)
        for p in parts:
            mount = "/" if p is None else p.mountpoint
            if mount in seen:
                continue
            seen.add(mount)
            try:
                usage = self._psutil.disk_usage(mount)
            except OSError:  # unmounted or unreadable since it was listed: skip this one
                continue
            attrs = {"system.filesystem.mountpoint": mount}
            if p is not None:
                attrs.update({"system.device": p.device, "system.filesystem.type": p.fstype,
                              "system.filesystem.mode": "ro" if "ro" in p.opts.split(",") else "rw"})
            yield attrs, usage

    def _fs_usage(self) -> Iterator[Observation]:
        for attrs, u in self._filesystems():
            reserved = max(0, u.total - u.used - u.free)  # root-only blocks
            for state, n in (("used", u.used), ("free", u.free), ("reserved", reserved)):
                yield Observation(n, {**attrs, "system.filesystem.state": state})

    def _fs_utilization(self) -> Iterator[Observation]:
        for attrs, u in self._filesystems():
            if u.total > 0:
                yield Observation(min(1.0, u.used / u.total), attrs)

    def _fs_limit(self) -> Iterator[Observation]:
        for attrs, u in self._filesystems():
            yield Observation(u.total, attrs)

    def _nics(self) -> dict[str, Any]:
        return self._psutil.net_io_counters(pernic=True) or {}

    def _net_io(self) -> Iterator[Observation]:
        for nic, c in self._nics().items():
            yield Observation(c.bytes_sent, {"network.interface.name": nic, "network.io.direction": "transmit"})
            yield Observation(c.bytes_recv, {"network.interface.name": nic, "network.io.direction": "receive"})

    def _net_packets(self) -> Iterator[Observation]:
        for nic, c in self._nics().items():
            yield Observation(c.packets_sent, {"network.interface.name": nic, "network.io.direction": "transmit"})
            yield Observation(c.packets_recv, {"network.interface.name": nic, "network.io.direction": "receive"})

    def _uptime(self) -> Iterator[Observation]:
        yield Observation(max(0.0, time.time() - self._psutil.boot_time()))

    # -- this process ----------------------------------------------------------------------------
    def _register_process(self) -> None:
        self._add("counter", "process.cpu.time", self._proc_cpu_time, "s", "CPU seconds of this process")
        self._add("gauge", "process.cpu.utilization", self._proc_cpu_utilization, "1",
                  "CPU time since the previous collection / (elapsed time x available CPUs), 0..1")
        self._add("updown", "process.memory.usage", self._proc_rss, "By", "Resident memory of this process")
        self._add("updown", "process.memory.virtual", self._proc_vms, "By", "Virtual memory of this process")
        self._add("updown", "process.thread.count", self._proc_threads, "{thread}", "Threads of this process")
        self._add("gauge", "process.uptime", self._proc_uptime, "s", "Seconds since this process started")

    def _proc_cpu_time(self) -> Iterator[Observation]:
        t = self._proc.cpu_times()
        yield Observation(t.user, {"cpu.mode": "user"})
        yield Observation(t.system, {"cpu.mode": "system"})

    def _proc_cpu_utilization(self) -> Iterator[Observation]:
        now = (time.monotonic(), self._proc.cpu_times())
        with self._lock:
            last, self._last_proc = self._last_proc, now
        elapsed = (now[0] - last[0]) * self._cpus
        if elapsed <= 0:
            return
        for mode in ("user", "system"):
            d = max(0.0, getattr(now[1], mode) - getattr(last[1], mode))
            yield Observation(min(1.0, d / elapsed), {"cpu.mode": mode})

    def _proc_rss(self) -> Iterator[Observation]:
        yield Observation(self._proc.memory_info().rss)

    def _proc_vms(self) -> Iterator[Observation]:
        yield Observation(self._proc.memory_info().vms)

    def _proc_threads(self) -> Iterator[Observation]:
        yield Observation(self._proc.num_threads())

    def _proc_uptime(self) -> Iterator[Observation]:
        yield Observation(max(0.0, time.time() - self._proc.create_time()))


_started: HostMetrics | None = None


def start(meter_provider: Any = None, *, system: bool = True, process: bool = True) -> HostMetrics:
    """Register the host (``system``) and/or ``process`` instruments on ``meter_provider``
    (default: the global one). Their values are read at each collection of the provider's readers."""
    global _started
    _started = HostMetrics(meter_provider, system=system, process=process)
    return _started


def enabled_by_env() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def start_from_env() -> HostMetrics | None:
    """Under ``opentelemetry-instrument`` (via ``instrumentation.post_instrument``): start host
    metrics on the global MeterProvider when ``OTEL_TELEMETRY_HOST_METRICS=true``."""
    if not enabled_by_env():
        return None
    try:
        return start()
    except ImportError:
        log.warning("%s is set but psutil is not installed: pip install 'otel-telemetry[hostmetrics]'", ENV)
        return None
