"""The web room: a static in-browser upscaler (`export_site`), MSN run on the user's own machine
with onnxruntime-web, so that no photo leaves it.

    python -m msn_deploy.engines.web export DIR [--model best.pth] [--precision fp16]
"""

from msn_deploy.engines.web.site import ORT_WEB_VERSION, SiteOptions, WebSite, export_site, serving

__all__ = ["ORT_WEB_VERSION", "SiteOptions", "WebSite", "export_site", "serving"]
