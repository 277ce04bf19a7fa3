#!/usr/bin/env python3
"""thinFTP as a benchmark peer: its own start_server(), with the password
given on the command line instead of typed at a prompt, logging at WARNING."""
import argparse
import logging

from thinftp.logger import get_logger
from thinftp.server import ThreadedThinFTP, start_server

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--user", required=True)
ap.add_argument("--password", required=True)
ap.add_argument("--root", required=True)
a = ap.parse_args()

# Only so that a rerun can bind while old connections sit in TIME_WAIT.
ThreadedThinFTP.allow_reuse_address = True

config = argparse.Namespace(bind="127.0.0.1", port=a.port, user=a.user, directory=a.root, debug=False)
config.pswd = a.password
config.lgr = get_logger(debug=False)
config.lgr.setLevel(logging.WARNING)
start_server(config)
