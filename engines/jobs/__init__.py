"""The jobs room: folders of many images (resumable, pipelined, on one machine or a Ray cluster),
one video (in one process or in parallel segments), and the Ray connection both use.

    from msn_deploy.engines.jobs import FolderJob, run_folder_job
    report = run_folder_job(FolderJob(inputs=[Path("photos")], output=Path("out"), model="official",
                                      recursive=True, workers=2))
    report = run_video_job(VideoJob(Path("clip.mp4"), Path("out/"), segment_seconds=10, workers=2))
"""

from msn_deploy.engines.jobs.folder import FolderJob, JobReport, run_folder_job
from msn_deploy.engines.jobs.video import VideoJob, VideoJobReport, run_video_job

__all__ = ["FolderJob", "JobReport", "VideoJob", "VideoJobReport", "run_folder_job", "run_video_job"]
