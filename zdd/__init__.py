"""zdd: git push-to-deploy for Docker apps behind Caddy, with zero downtime."""

__version__ = "0.1.0"
