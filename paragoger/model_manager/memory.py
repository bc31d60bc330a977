"""The model manager: every model the app loads, of every kind, and the memory each one holds.

Checkpoints, LoRA files, upscalers, captioners and depth estimators load through ``ModelManager.load`` (a kind
to come - motion modules, ControlNets, face restorers - is one more line in ``KINDS``). Each entry knows its bytes
on each device (measured from its tensors, a storage shared by two modules counted once), when it was last used,
and whether a running job holds it.

Before a load, the least recently used entries no job holds are let go until the new one fits the budgets: on a
GPU they first move to RAM (when RAM has room; using them again moves them back, which is much faster than
reading the file), otherwise they are unloaded. ``limits`` caps how many entries of one kind stay ("Checkpoints
to keep in memory"). An entry a running job holds is never let go.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

import psutil
import torch

from paragoger.devices import free_memory, weights_outside_heap
from paragoger.errors import NotFoundError, UserError

# kind -> the label the memory table shows. Adding a kind of model is one line here.
KINDS: dict[str, str] = {
    "checkpoint": "Checkpoint",
    "lora": "LoRA file",
    "upscaler": "Upscaler",
    "captioner": "Captioner",
    "depth": "Depth estimator",
    "motion_module": "Motion module",
    "controlnet": "ControlNet / adapter",
    "face_restorer": "Face restorer",
    "video": "Video model",
}

GIB, MIB = 1 << 30, 1 << 20
CPU = torch.device("cpu")


def pool_of(device: torch.device | str) -> str:
    """"vram" for a CUDA device, else "ram" (the CPU, and Apple's MPS, whose memory is the system's)."""
    return "vram" if torch.device(device).type == "cuda" else "ram"


@dataclass(frozen=True)
class Budgets:
    """Bytes models may hold: ``ram`` in system memory, ``vram`` on the GPU (None: no limit / no GPU)."""

    ram: int | None
    vram: int | None


def automatic_budgets(held_ram: int, held_vram: int, device: torch.device) -> Budgets:
    """What ComfyUI does too: the memory free now plus what our models already hold, less a margin for the
    work itself (activations, pictures, the rest of the app): 10% of the device, at least 1 GiB."""
    memory = psutil.virtual_memory()
    ram = memory.available + held_ram - max(GIB, memory.total // 10)
    vram = None
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        vram = free + held_vram - max(GIB, total // 10)
    return Budgets(ram=max(0, ram), vram=None if vram is None else max(0, vram))


def configured_budgets(ram_mb: float, vram_mb: float, held_ram: int, held_vram: int,
                       device: torch.device) -> Budgets:
    """The budgets the settings give (in MB; 0 = automatic, see ``automatic_budgets``)."""
    auto = automatic_budgets(held_ram, held_vram, device)
    vram = auto.vram if auto.vram is None or vram_mb <= 0 else int(vram_mb * MIB)
    return Budgets(ram=int(ram_mb * MIB) if ram_mb > 0 else auto.ram, vram=vram)


def modules_of(model: Any) -> dict[str, torch.nn.Module]:
    """The named torch modules a loaded model is made of: a module itself, a checkpoint's parts (``modules()``),
    or the modules among an object's attributes (captioners, spandrel's descriptors, depth estimators)."""
    if isinstance(model, torch.nn.Module):
        return {"model": model}
    parts = getattr(model, "modules", None)
    if callable(parts):
        found = parts()
        if isinstance(found, dict):
            return found
    return {name.lstrip("_"): value for name, value in vars(model).items() if isinstance(value, torch.nn.Module)} \
        if hasattr(model, "__dict__") else {}


def _loose_tensors(value: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Tensors held outside modules (a LoRA file's groups, cached text features), a few levels deep."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 3 and isinstance(value, dict):
        for item in value.values():
            yield from _loose_tensors(item, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple)):
        for item in value:
            yield from _loose_tensors(item, depth + 1)
    elif depth == 0 and hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
        for item in vars(value).values():
            if not isinstance(item, torch.nn.Module):
                yield from _loose_tensors(item, depth + 1)


def measure(model: Any) -> dict[str, dict[str, int]]:
    """``{part: {device: bytes}}`` for a loaded model; each storage counted once, meta tensors not at all."""
    seen: set[tuple[str, int]] = set()
    parts: dict[str, dict[str, int]] = {}

    def add(part: str, tensor: torch.Tensor) -> None:
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        if key in seen:
            return
        seen.add(key)
        per_device = parts.setdefault(part, {})
        per_device[str(tensor.device)] = per_device.get(str(tensor.device), 0) + storage.nbytes()

    for part, module in modules_of(model).items():
        for tensor in [*module.parameters(), *module.buffers()]:
            add(part, tensor)
    for tensor in _loose_tensors(model):
        add("tensors", tensor)
    return parts


@dataclass(eq=False)
class Entry:
    """One loaded model. ``device`` is where it runs; ``placed`` where its weights are now (the CPU while it is
    offloaded to RAM). ``users`` counts the running jobs that hold it."""

    kind: str
    key: Hashable
    name: str
    model: Any
    device: torch.device
    placed: torch.device
    last_use: float = 0.0
    users: int = 0
    parts: dict[str, dict[str, int]] = field(default_factory=dict)

    def remeasure(self) -> None:
        self.parts = measure(self.model) if self.model is not None else {}

    def bytes_by_device(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for per_device in self.parts.values():
            for device, size in per_device.items():
                total[device] = total.get(device, 0) + size
        return total

    def bytes_in(self, pool: str) -> int:
        return sum(size for device, size in self.bytes_by_device().items() if pool_of(device) == pool)

    def move(self, device: torch.device) -> None:
        for module in modules_of(self.model).values():
            module.to(device)
        self.placed = device
        self.remeasure()


class ModelManager:
    """Every loaded model by (kind, key), least recently used first. Thread-safe; loads run one at a time."""

    def __init__(self, device: torch.device | str = "cpu",
                 budgets: Callable[[int, int], Budgets] | None = None):
        self.device = torch.device(device)
        self.limits: dict[str, int] = {}   # kind -> most entries of that kind kept
        self._budgets = budgets or (lambda ram, vram: automatic_budgets(ram, vram, self.device))
        self._entries: OrderedDict[tuple[str, Hashable], Entry] = OrderedDict()
        self._lock = threading.RLock()       # the entries
        self._load_lock = threading.RLock()  # one load at a time
        self._local = threading.local()      # this thread's holding scopes
        self.loads = 0                       # models read from disk so far

    # ------------------------------------------------------------------------------------------ loading
    def load(self, kind: str, key: Hashable, loader: Callable[[], Any], *, name: str,
             device: torch.device | str | None = None, expected_bytes: int = 0) -> Any:
        """The model for ``(kind, key)``: the loaded one (moved back from RAM if it was offloaded), or
        ``loader()`` run after making room for about ``expected_bytes``. Inside ``holding()`` it stays held."""
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}: add it to KINDS")
        device = torch.device(device) if device is not None else self.device
        with self._load_lock:
            with self._lock:
                entry = self._entries.get((kind, key))
                if entry is not None:
                    self._touch(entry)
                    if entry.placed != entry.device:
                        self._make_room(pool_of(entry.device), entry.bytes_in("ram"), keep={entry})
                        entry.move(entry.device)
                    return entry.model
                self._cap(kind, before_load=True)
                self._make_room(pool_of(device), expected_bytes)
            with weights_outside_heap():
                model = loader()
            with self._lock:
                entry = Entry(kind, key, name, model, device, device)
                entry.remeasure()
                self._entries[(kind, key)] = entry
                self._touch(entry)
                self.loads += 1
                self._cap(kind)
                self._make_room(pool_of(device), 0, keep={entry})
            return model

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Loaded entries, least recently used first."""
        with self._lock:
            return [e for e in self._entries.values() if kind is None or e.kind == kind]

    # ------------------------------------------------------------------------------------------ in use
    @contextlib.contextmanager
    def holding(self):
        """Every model this thread loads or uses inside the block is held (never let go) until it ends."""
        scopes = self._scopes()
        held: list[Entry] = []
        scopes.append(held)
        try:
            yield
        finally:
            scopes.pop()
            with self._lock:
                for entry in held:
                    entry.users -= 1

    def _scopes(self) -> list[list[Entry]]:
        if not hasattr(self._local, "scopes"):
            self._local.scopes = []
        return self._local.scopes

    def _touch(self, entry: Entry) -> None:
        entry.last_use = time.time()
        self._entries.move_to_end((entry.kind, entry.key))
        scopes = self._scopes()
        if scopes and not any(entry in scope for scope in scopes):
            scopes[-1].append(entry)
            entry.users += 1

    # ------------------------------------------------------------------------------------------ letting go
    def unload(self, kind: str, key: Hashable) -> None:
        """Unload one entry (``key``, or its text as ``report`` shows it); UserError while a running job holds it."""
        with self._lock:
            entry = self._entries.get((kind, key)) or next(
                (e for e in self.entries(kind) if repr(e.key) == key), None)
            if entry is None:
                raise NotFoundError("model_not_loaded", kind=kind, name=str(key))
            if entry.users:
                raise UserError("model_in_use", name=entry.name)
            self._drop(entry)

    def unload_where(self, kind: str, match: Callable[[Hashable], bool] = lambda key: True) -> None:
        """Unload the entries of ``kind`` whose key matches, except those a running job holds."""
        with self._lock:
            for entry in self.entries(kind):
                if not entry.users and match(entry.key):
                    self._drop(entry)

    def fit(self) -> None:
        """After the budgets or limits changed: let go of what is now over them (models in use stay)."""
        with self._lock:
            for kind in list(self.limits):
                self._cap(kind)
            self._make_room("vram", 0)
            self._make_room("ram", 0)

    def free_unused(self, device: torch.device | str | None = None) -> None:
        """After running out of memory on ``device``: let go of every entry there that no job holds (to RAM
        when that fits, from a GPU), then hand the memory back."""
        device = torch.device(device) if device is not None else self.device
        with self._lock:
            self._make_room(pool_of(device), 0, budget=0)
        free_memory(device)

    def _cap(self, kind: str, *, before_load: bool = False) -> None:
        limit = self.limits.get(kind)
        if limit is None:
            return
        # Before a load, keep one: the model in use stays until the new one has loaded (a bad file leaves it).
        keep = max(1, limit - 1) if before_load else max(1, limit)
        for entry in self.entries(kind):
            if len(self.entries(kind)) <= keep:
                return
            if not entry.users:
                self._drop(entry)

    def _used(self, pool: str) -> int:
        return sum(entry.bytes_in(pool) for entry in self._entries.values())

    def budgets(self) -> Budgets:
        return self._budgets(self._used("ram"), self._used("vram"))

    def _make_room(self, pool: str, needed: int, keep: set | frozenset = frozenset(), *,
                   budget: int | None = None) -> None:
        """Let go of least recently used entries (not held, not in ``keep``) until ``needed`` more bytes fit."""
        if budget is None:
            budget = getattr(self.budgets(), pool)
        if budget is None:
            return
        for entry in list(self._entries.values()):
            if self._used(pool) + needed <= budget:
                return
            if entry in keep or entry.users or not entry.bytes_in(pool):
                continue
            if pool == "vram" and self._room_in_ram(entry, keep):
                entry.move(CPU)
                free_memory(entry.device)
            else:
                self._drop(entry)

    def _room_in_ram(self, entry: Entry, keep) -> bool:
        needed = entry.bytes_in("vram")
        self._make_room("ram", needed, keep={*keep, entry})
        ram = self.budgets().ram
        return ram is None or self._used("ram") + needed <= ram

    def _drop(self, entry: Entry) -> None:
        self._entries.pop((entry.kind, entry.key), None)
        entry.model = None
        entry.parts = {}
        free_memory(entry.placed)

    # ------------------------------------------------------------------------------------------ reporting
    def report(self) -> dict[str, Any]:
        """What /sdapi/v1/memory and the memory table show: every entry (most recently used first) and totals."""
        with self._lock:
            rows = []
            next_to_go = next((e for e in self._entries.values() if not e.users), None)
            for entry in reversed(self._entries.values()):
                entry.remeasure()  # a VAE may have been cast to fp32 since it loaded
                by_device = entry.bytes_by_device()
                rows.append({
                    "kind": entry.kind, "name": entry.name, "key": repr(entry.key), "device": str(entry.placed),
                    "runs_on": str(entry.device), "bytes": sum(by_device.values()), "bytes_by_device": by_device,
                    "parts": {part: sum(sizes.values()) for part, sizes in entry.parts.items()},
                    "last_use": entry.last_use, "in_use": entry.users > 0, "offloaded": entry.placed != entry.device,
                    "next_to_unload": entry is next_to_go,
                })
            budgets = self.budgets()
            return {"models": rows, "totals": {"ram": self._used("ram"), "vram": self._used("vram")},
                    "budgets": {"ram": budgets.ram, "vram": budgets.vram}}
