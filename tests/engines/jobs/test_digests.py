"""Every field of a job's settings decides whether an earlier run's outputs are reused: the folder
job's JobSettings and the segment plan's digest change with each field that shapes the output, and
with nothing else (hardening round 3, H: reruns after a change were the class of missed bugs)."""

from __future__ import annotations

import dataclasses

import pytest

from msn_deploy.engines.jobs.manifest import JobSettings
from msn_deploy.engines.jobs.segments import SegmentJob
from msn_deploy.engines.media.target import TargetSize
from msn_deploy.engines.media.video import VideoOptions, Window
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.runtime.targets import Target

SETTINGS = JobSettings("a" * 64, "openvino", "fp32", 4, None, 32, None, None)
OTHER_SETTINGS = {"model_sha256": "b" * 64, "backend": "onnxruntime", "precision": "fp16", "scale": 2, "tile": 256,
                  "overlap": 8, "suffix": ".webp", "target": "1920x1080!"}

OPTIONS = VideoOptions()
OTHER_OPTIONS = {"codec": "libx265", "pix_fmt": "yuv420p10le", "crf": 20, "batch": 2, "tile": 128, "overlap": 16,
                 "encoder_options": {"preset": "slow"}, "target": TargetSize(640, 480), "reuse_repeats": 2.0}
WINDOWS = [Window(None, 1000), Window(1000, None)]


def test_every_job_setting_changes_the_digest():
    assert set(OTHER_SETTINGS) == {f.name for f in dataclasses.fields(JobSettings)}, "a field without a case here"
    for name, value in OTHER_SETTINGS.items():
        changed = dataclasses.replace(SETTINGS, **{name: value})
        assert changed.digest != SETTINGS.digest, name


def _segment_job(**changes: object) -> SegmentJob:
    fields = {"model": ModelFiles("m.pth", b"weights"), "target": Target("openvino", "cpu", "fp32"),
              "options": OPTIONS, "seconds": 10.0} | changes
    return SegmentJob(**fields)


def test_every_video_option_changes_the_segment_digest():
    assert set(OTHER_OPTIONS) == {f.name for f in dataclasses.fields(VideoOptions)}, "a field without a case here"
    base = _segment_job().digest(WINDOWS)
    for name, value in OTHER_OPTIONS.items():
        job = _segment_job(options=dataclasses.replace(OPTIONS, **{name: value}))
        assert job.digest(WINDOWS) != base, name
    assert _segment_job(options=dataclasses.replace(OPTIONS, target=TargetSize(640, 480, exact=True))).digest(
        WINDOWS) != _segment_job(options=dataclasses.replace(OPTIONS, target=TargetSize(640, 480))).digest(WINDOWS)


@pytest.mark.parametrize(("changes", "windows", "same"), [
    ({"model": ModelFiles("m.pth", b"other weights")}, WINDOWS, False),
    ({"target": Target("onnxruntime", "cpu", "fp32")}, WINDOWS, False),
    ({"target": Target("openvino", "cpu", "fp16")}, WINDOWS, False),
    ({}, [Window(None, 2000), Window(2000, None)], False),  # another --segment-seconds cuts elsewhere
    ({"model": ModelFiles("renamed.pth", b"weights")}, WINDOWS, True),  # the same bytes under another name
    ({"workers": 7}, WINDOWS, True),  # where and how many: not what a part holds
    ({"ray": "local"}, WINDOWS, True),
])
def test_what_changes_a_segment_plan_and_what_does_not(changes, windows, same):
    assert (_segment_job(**changes).digest(windows) == _segment_job().digest(WINDOWS)) == same
