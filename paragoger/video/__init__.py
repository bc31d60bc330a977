"""Video: motion modules (AnimateDiff), Stable Video Diffusion, frame windows and video files."""
