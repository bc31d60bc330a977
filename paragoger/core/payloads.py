"""What a job carries: one small frozen dataclass per kind of work, each naming its own ``kind``.

The queue (``core/jobs.py``) runs any of them in arrival order; AppContext registers one handler per payload type
(``JobHandlers``), so a new kind of work (video, ...) is a dataclass here and one ``register`` line there. The
kind is what GET /sdapi/v1/jobs/{id} and the page's "now running" line show.

Payloads holding pictures compare by identity (``eq=False``): comparing pictures would be slow and means nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from paragoger.core.batch import BatchRequest
    from paragoger.core.extras import ExtrasRequest
    from paragoger.core.jobs import Job
    from paragoger.core.request import GenerationRequest


@dataclass(frozen=True, eq=False)
class GenerationJob:
    """A generation from a tab, the API or an extension: ``GenerationRequest`` -> ``GenerationResult``."""

    request: GenerationRequest

    @property
    def kind(self) -> str:
        return self.request.mode  # "txt2img" or "img2img", as A1111 names its routes


@dataclass(frozen=True)
class ModelSwitch:
    """Load a checkpoint (None: the selected or first one) with a VAE (None: the setting) -> its CheckpointInfo."""

    checkpoint: str | None
    vae: str | None = None
    kind: ClassVar[str] = "load-model"


@dataclass(frozen=True, eq=False)
class ExtrasJob:
    """The Extras tab and /extra-*-image(s): a checked ``ExtrasRequest`` -> ``ExtrasResult``."""

    request: ExtrasRequest
    kind: ClassVar[str] = "extras"


@dataclass(frozen=True, eq=False)
class CaptionJob:
    """Image to text: the captioner's name and the picture -> text."""

    captioner: str
    image: Any
    kind: ClassVar[str] = "caption"


@dataclass(frozen=True, eq=False)
class Img2ImgBatchJob:
    """img2img's Batch tab: every picture of a folder through one request -> ``BatchReport``."""

    batch: BatchRequest
    kind: ClassVar[str] = "img2img-batch"


@dataclass(frozen=True, eq=False)
class SvdJob:
    """Stable Video Diffusion: a ``video.svd.SvdRequest`` and how to write it -> ``core.svd_job.SvdOutput``."""

    request: Any
    formats: tuple[str, ...] = ("MP4",)
    fps: float = 6.0            # of the written video (the request's fps is the model's conditioning)
    save: bool = True
    kind: ClassVar[str] = "svd"


@dataclass(frozen=True, eq=False)
class WorkerCall:
    """``fn(job)`` run by the worker between other jobs (unloading models, an extension's device work)."""

    fn: Callable[[Job], Any]
    kind: ClassVar[str] = "call"
