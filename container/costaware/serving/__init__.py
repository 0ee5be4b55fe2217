"""HTTP serving on SageMaker's hosting contract: ``serve`` (server.py) runs gunicorn with the
Flask app from :func:`costaware.serving.app.create_app`; codecs.py parses and formats bodies,
policy_override.py reads per-request costs, config.py the environment. See docs/serving.md."""
