#!/usr/bin/env python3
"""Twisted's FTP server (twisted.protocols.ftp) as a benchmark peer.

The same pieces `twistd ftp` assembles (FTPFactory, a Portal, an FTP realm),
but with one user whose home is --root instead of /home/USER.
"""
import argparse

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.protocols.ftp import BaseFTPRealm, FTPFactory
from twisted.python import filepath

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--user", required=True)
ap.add_argument("--password", required=True)
ap.add_argument("--root", required=True)
a = ap.parse_args()


class Realm(BaseFTPRealm):
    def getHomeDirectory(self, avatarId):
        return filepath.FilePath(a.root)


checker = InMemoryUsernamePasswordDatabaseDontUse()
# FTP.ftp_PASS hands the checker str credentials (Twisted 2x).
checker.addUser(a.user, a.password)
factory = FTPFactory(Portal(Realm(a.root), [checker]))
factory.allowAnonymous = False
reactor.listenTCP(a.port, factory, interface="127.0.0.1", backlog=1024)
reactor.run()
