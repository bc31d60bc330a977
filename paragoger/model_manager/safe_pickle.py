"""Loading ``.ckpt`` pickles without ever running code from them.

A ``.ckpt`` is a Python pickle, and a pickle can name any function to call while it is read (``os.system``,
``builtins.eval``...). We read it with torch's ``weights_only`` unpickler, which builds tensors and plain
containers only, and widen its allow-list by exactly what real 2022 Stable Diffusion checkpoints need (the same
short list AUTOMATIC1111 allows):

* numpy scalars, dtypes and arrays (``global_step`` is a numpy int64; old numpy names and numpy 2 names);
* PyTorch Lightning's ``ModelCheckpoint`` class in ``callbacks``, replaced by an inert stand-in class;
* what torch already allows: tensors, storage types, ``collections.OrderedDict``, ``_codecs.encode``, sets.

Before loading, the pickle's GLOBAL instructions are read without executing anything, so a refusal can name the
offending global; torch's unpickler would refuse it anyway.
"""
from __future__ import annotations

import pickle
import pickletools
import re
import threading
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path

import numpy
import torch
from torch import _weights_only_unpickler

from paragoger.errors import ModelLoadError


class LightningModelCheckpoint:
    """Stands in for ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` in old checkpoints.

    Real files store the class itself (as a dict key of ``callbacks``) and sometimes an instance's attributes;
    this class has no behaviour, so building it runs nothing.
    """

    def __repr__(self) -> str:
        return f"LightningModelCheckpoint({vars(self)!r})"


LIGHTNING_CHECKPOINT_CLASS = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"

_NUMPY_SCALAR = numpy._core.multiarray.scalar
_NUMPY_RECONSTRUCT = numpy._core.multiarray._reconstruct

# (object, the dotted name it appears under in a pickle). Both numpy 1 ("numpy.core") and numpy 2 ("numpy._core")
# spellings occur: files written in 2022 use the first.
EXTRA_SAFE_GLOBALS: list[tuple[object, str]] = [
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    (_NUMPY_SCALAR, "numpy._core.multiarray.scalar"),
    (_NUMPY_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    (_NUMPY_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (numpy.dtype, "numpy.dtype"),
    (numpy.ndarray, "numpy.ndarray"),
    # numpy rebuilds a dtype by calling numpy.dtype, then sets its state on the instance, whose class is one of
    # these (numpy.dtypes.Int64DType, ...); they must be allowed for that second step (building them is harmless).
    *((type(numpy.dtype(code)), f"numpy.dtypes.{type(numpy.dtype(code)).__name__}") for code in "?bBhHiIlLqQefdgFDG"),
    (LightningModelCheckpoint, LIGHTNING_CHECKPOINT_CLASS),
    (LightningModelCheckpoint, "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"),
]

# torch keeps its extra allow-list in one process-wide set that ``safe_globals`` adds to and removes from; two
# loads overlapping would remove each other's entries, so loads take turns.
_SAFE_GLOBALS_LOCK = threading.Lock()


def allowed_global_names() -> set[str]:
    """Every ``module.name`` a checkpoint pickle may mention."""
    return set(_weights_only_unpickler._get_allowed_globals()) | {name for _, name in EXTRA_SAFE_GLOBALS}


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_MEMO_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def _python3_name(module: str, name: str) -> str:
    """Protocol 2 pickles written by Python 3 use Python 2 names (``__builtin__.set``); unpicklers map them back."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


def pickle_globals(stream) -> list[str]:
    """The ``module.name`` globals one pickle refers to, read with ``pickletools`` (nothing is executed).

    Protocol 4 names globals with STACK_GLOBAL, taking module and name from the two strings pushed before it
    (possibly fetched back from the memo); the strings are tracked for that.
    """
    found, strings, memo, last = [], [], {}, None
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in ("GLOBAL", "INST"):
            found.append(_python3_name(*str(arg).split(" ", 1)))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(_python3_name(strings[-2], strings[-1]))
        if opcode.name in _STRING_OPS:
            last = arg if isinstance(arg, str) else arg.decode("latin-1")
            strings.append(last)
        elif opcode.name in _MEMO_PUT_OPS:
            memo[arg] = last
        elif opcode.name == "MEMOIZE":
            memo[len(memo)] = last
        elif opcode.name in _MEMO_GET_OPS and isinstance(memo.get(arg), str):
            strings.append(memo[arg])
        if opcode.name not in _STRING_OPS and opcode.name not in _MEMO_PUT_OPS | {"MEMOIZE"}:
            last = None
    return found


def _named_globals(path: Path) -> list[str]:
    """Globals named anywhere in a checkpoint's pickles: ``data.pkl`` of a zip archive, or the first pickles of
    a legacy file (magic number, version, system info, then the object). Unreadable parts end the scan.
    """
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in (n for n in archive.namelist() if n.endswith("data.pkl")):
                    with archive.open(member) as stream:
                        found += pickle_globals(stream)
        else:
            with open(path, "rb") as stream:
                for _ in range(4):
                    found += pickle_globals(stream)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError, KeyError):
        pass  # not a pickle (or not any more): torch's own unpickler will say so
    return found


def _refused(name: str, what: str) -> ModelLoadError:
    return ModelLoadError("pickle_refused", name=name, what=what)


def _corrupt(name: str, reason: str) -> ModelLoadError:
    return ModelLoadError("checkpoint_corrupt", name=name, reason=reason)


def load_ckpt(path: Path, *, display_name: str | None = None):
    """The object stored in a ``.ckpt``/``.pt`` file, tensors on the CPU.

    Raises ModelLoadError("pickle_refused", what=<global>) for a pickle that asks for anything off the
    allow-list, and ModelLoadError("checkpoint_corrupt") for truncated or unreadable files.
    """
    path = Path(path)
    name = display_name or path.name
    allowed = allowed_global_names()
    unknown = [g for g in _named_globals(path) if g not in allowed]
    if unknown:
        raise _refused(name, unknown[0])
    is_zip = zipfile.is_zipfile(path)
    try:
        with _SAFE_GLOBALS_LOCK, torch.serialization.safe_globals(EXTRA_SAFE_GLOBALS):
            # mmap: nothing is read until used, so the EMA copies many 2022 files carry cost no memory
            # (``state_dict`` copies the tensors it keeps).
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        message = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"unrecognized function (\S+)", message)
        if found:
            raise _refused(name, found[1]) from None
        raise _corrupt(name, "not a model file this app can read safely") from None
    except Exception as error:  # noqa: BLE001 - damaged data fails in many ways (IndexError, EOFError, ...);
        # all of them mean the same to the user, and nothing from the file has run.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _corrupt(name, reason) from None
