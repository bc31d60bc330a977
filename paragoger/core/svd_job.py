"""A Stable Video Diffusion job: the frames (``video.svd.SvdEngine``), then the video files with the infotext."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paragoger.core.payloads import SvdJob
from paragoger.core.video import write_video
from paragoger.imaging import infotext as infotexts

MODE = "svd"  # outputs/svd-videos, as Forge keeps SVD's videos apart


@dataclass
class SvdOutput:
    frames: list
    seed: int
    infotext: str
    interrupted: bool
    video: object = None                      # video.files.SavedVideo
    scratch_dirs: list[Path] = field(default_factory=list)


def run_svd(engine, payload: SvdJob, job, outputs_dir: Path) -> SvdOutput:
    result = engine.generate(payload.request, job)
    text = infotexts.format_infotext("", "", result.parameters)
    output = SvdOutput(frames=result.frames, seed=result.seed, infotext=text, interrupted=result.interrupted)
    if result.frames:
        output.video = write_video(outputs_dir, MODE, result.frames, seed=result.seed, fps=payload.fps,
                                   formats=payload.formats, infotext=text, save=payload.save,
                                   scratch=output.scratch_dirs)
    return output
