"""Quality control: each chunk of each video rendition measured against the same frames of the
source (VMAF, PSNR, SSIM), while the job packages, beside the encode.

- ``metrics``: the measuring ffmpeg command, its logs read back, per-frame values packed
- ``services``: which renditions are measured, every task's state, the fan-ins
- ``selectors``: QC on or off, a job's measurement state, a rendition's scores, the page report
- ``work``: one task's measurement, run inside a worker
- ``jobs``: the RQ entry points (the ``quality`` queue) and the sweep for lost tasks
"""
