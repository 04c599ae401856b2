"""Benchmarks of whole commands and services over the core: folder jobs and videos, the video
pipeline, tile seams, the HTTP service under load and on a busy machine, the in-browser upscaler."""
