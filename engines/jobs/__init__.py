"""Long upscaling jobs: folders of many images (resumable, pipelined, on one machine or a Ray
cluster) and long videos in parallel segments.

    from engines.jobs import FolderJob, run_folder_job
    report = run_folder_job(FolderJob(inputs=[Path("photos")], output=Path("out"), model="official",
                                      recursive=True, workers=2))
"""

from engines.jobs.folder import FolderJob, JobReport, run_folder_job

__all__ = ["FolderJob", "JobReport", "run_folder_job"]
