#!/usr/bin/env python3
"""pyftpdlib as a benchmark peer: its async FTPServer or its ThreadedFTPServer.

One user rooted at --root, no connection limits, logging at WARNING (as a
production deployment would run). RETR uses sendfile(2) when pyftpdlib can.
With --tls-cert/--tls-key: TLS_FTPHandler (pyOpenSSL), explicit FTPS with
TLS required on the control and data connections (AUTH TLS, PROT P).
"""
import argparse
import logging

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer, ThreadedFTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["async", "threaded"], required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--user", required=True)
ap.add_argument("--password", required=True)
ap.add_argument("--root", required=True)
ap.add_argument("--tls-cert")
ap.add_argument("--tls-key")
a = ap.parse_args()

logging.basicConfig(level=logging.WARNING)
auth = DummyAuthorizer()
auth.add_user(a.user, a.password, a.root, perm="elradfmwMT")
handler = FTPHandler
if a.tls_cert:
    from pyftpdlib.handlers import TLS_FTPHandler

    handler = TLS_FTPHandler
    handler.certfile = a.tls_cert
    handler.keyfile = a.tls_key
    handler.tls_control_required = True
    handler.tls_data_required = True
handler.authorizer = auth
cls = FTPServer if a.mode == "async" else ThreadedFTPServer
server = cls(("127.0.0.1", a.port), handler)
server.max_cons = 0
server.max_cons_per_ip = 0
server.serve_forever(handle_exit=True)
