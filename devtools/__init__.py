"""Tools for development and tests, not part of the running service: the demo fleet (`manage.py simulate`)
and the synthetic fleet the scenario tests drive. They talk to buildboard through its HTTP API only."""
