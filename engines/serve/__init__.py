"""MSN as an HTTP service on Ray Serve: `python -m msn_deploy.engines.serve MODEL`, or a Serve config file
(`serve run engines/serve/serve_config.yaml`). See engines/serve/app.py for the HTTP API."""
