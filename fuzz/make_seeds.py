#!/usr/bin/env python3
"""Write the committed seed corpus, fuzz/corpus/seed/<target>/.

The seeds are what real clients send (curl, lftp, wget, FileZilla, WinSCP,
Python ftplib, as seen in their debug logs), plus the hostile input that
issue 5 names: Telnet IAC sequences, over-long lines, NUL, invalid UTF-8,
HTTP request lines (ALPACA), PORT/EPRT out of range, REST past the end,
`..`, `.`, `//`, `\\`, 255+ byte components, names holding CR and 0xFF.

Run it from anywhere; it rewrites the seed directories from scratch.
Input layouts are described at the top of each fuzz_targets/*.rs file.
"""

import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "corpus", "seed")

IAC, IP, DM, WILL, DO = b"\xff", b"\xf4", b"\xf2", b"\xfb", b"\xfd"
LONG_NAME = b"n" * 300


def crlf(*lines):
    return b"".join(line + b"\r\n" for line in lines)


# Client dialogues (control connection, client -> server).
DIALOGUES = {
    "curl_list": crlf(b"USER anonymous", b"PASS ftp@example.com", b"PWD", b"CWD sub", b"EPSV",
                      b"TYPE A", b"LIST", b"QUIT"),
    "curl_retr_size": crlf(b"USER anonymous", b"PASS ftp@example.com", b"PWD", b"EPSV", b"TYPE I",
                           b"SIZE hello.txt", b"RETR hello.txt", b"QUIT"),
    "curl_upload_resume": crlf(b"USER anonymous", b"PASS ftp@example.com", b"PWD", b"EPSV", b"TYPE I",
                               b"SIZE up.bin", b"APPE up.bin", b"EPSV", b"REST 4", b"STOR hello.txt", b"QUIT"),
    "lftp_mlsd": crlf(b"FEAT", b"AUTH TLS", b"USER anonymous", b"PASS lftp@", b"PWD", b"OPTS UTF8 ON",
                      b"OPTS MLST type;size;modify;perm;UNIX.mode;", b"EPSV", b"MLSD", b"CWD sub", b"EPSV",
                      b"RETR inner.txt", b"MDTM inner.txt", b"MLST inner.txt", b"CDUP", b"QUIT"),
    "filezilla": crlf(b"AUTH TLS", b"AUTH SSL", b"USER anonymous", b"PASS anonymous@", b"SYST", b"FEAT",
                      b"OPTS UTF8 ON", b"PWD", b"TYPE I", b"PASV", b"MLSD", b"CWD /sub", b"PWD", b"PASV",
                      b"MLSD", b"MFMT 20240102030405 /hello.txt", b"QUIT"),
    "winscp": crlf(b"USER anonymous", b"PASS anonymous@example.com", b"SYST", b"FEAT", b"OPTS UTF8 ON", b"PWD",
                   b"CWD /", b"TYPE A", b"PASV", b"LIST -a", b"TYPE I", b"PASV", b"STOR test.txt",
                   b"MFMT 20240102030405 test.txt", b"SIZE test.txt", b"REST 0", b"PASV", b"RETR test.txt",
                   b"DELE test.txt", b"QUIT"),
    "ftplib": crlf(b"USER anonymous", b"PASS anonymous@", b"TYPE A", b"PASV", b"NLST", b"CWD sub", b"PWD",
                   b"CDUP", b"MKD newdir", b"RNFR newdir", b"RNTO renamed", b"RMD renamed", b"TYPE I",
                   b"SIZE hello.txt", b"PORT 127,0,0,1,19,136", b"STOU", b"QUIT"),
    "wget_bare_lf": b"USER anonymous\nPASS -wget@\nSYST\nPWD\nTYPE I\nSIZE hello.txt\nEPSV\nRETR hello.txt\n",
    "user_login_write": crlf(b"USER alice", b"PASS wrong", b"USER alice", b"PASS secret", b"MKD d", b"CWD d",
                             b"EPRT |1|127.0.0.1|5001|", b"STOR f", b"SITE CHMOD 600 f", b"RNFR f", b"RNTO ../g",
                             b"CDUP", b"RMD d", b"DELE g", b"QUIT"),
    "abor_stat_during_retr": crlf(b"USER anonymous", b"PASS x", b"PASV", b"RETR hello.txt", b"STAT",
                                  IAC + IP + IAC + DM + b"ABOR", b"NOOP", b"EPSV ALL", b"PASV", b"EPSV",
                                  b"LIST", IAC + IP + IAC + b"ABOR", b"QUIT"),
    "http_alpaca": crlf(b"GET / HTTP/1.1", b"Host: ftp.example.com", b""),
    "unknown_before_login": crlf(b"XYZZ", b"", b"HELO there", b"USER anonymous"),
    # The session target's tree has links out of the jail: escape -> <base>/outside (absolute),
    # sub/up -> ../../outside, canary_link -> ../outside/canary.
    "jail_escape": crlf(b"USER anonymous", b"PASS x", b"CWD ../../..", b"PWD", b"SIZE ../../../etc/passwd",
                        b"SIZE canary_link", b"PASV", b"RETR canary_link", b"PASV", b"RETR escape/canary",
                        b"EPSV", b"RETR sub/up/canary", b"CWD sub/up", b"PASV", b"LIST sub/up", b"PASV",
                        b"MLSD escape", b"MDTM //etc//passwd", b"SIZE \\..\\..\\etc\\passwd", b"CWD .",
                        b"CWD ..", b"CWD //", b"STAT escape", b"MLST canary_link", b"QUIT"),
    "jail_escape_write": crlf(b"USER anonymous", b"PASS x", b"PASV", b"STOR escape/new", b"PASV",
                              b"STOR sub/up/canary", b"PASV", b"APPE canary_link", b"PASV", b"STOU escape",
                              b"DELE sub/up/canary", b"DELE canary_link", b"MKD sub/up/dir", b"RNFR hello.txt",
                              b"RNTO escape/moved", b"RNFR sub/up", b"RNTO ../../x", b"SITE CHMOD 777 sub/up/canary",
                              b"MFMT 20000101000000 escape/canary", b"RMD escape", b"RMD sub/up", b"QUIT"),
    "reply_injection": crlf(b"USER anonymous", b"PASS x", b"MKD a\rb", b"SIZE cr\rname", b"STAT /",
                            b"MLST quote\"d", b"MKD \"q\"", b"PWD", b"SIZE ff\xff\xffname", b"MDTM 226 fake reply",
                            b"NLST", b"QUIT"),
    "bad_arguments": crlf(b"USER anonymous", b"PASS x", b"PORT 127,0,0,1,300,1", b"PORT 1,2,3",
                          b"PORT 999,0,0,1,1,1", b"EPRT |3|::1|5000|", b"EPRT |1|127.0.0.1|99999|",
                          b"EPRT |2|::1|5000|", b"REST 99999999999999999999", b"REST -1", b"REST 1000000",
                          b"RETR hello.txt", b"TYPE X", b"MODE Z", b"STRU R", b"OPTS MLST bogus;",
                          b"MFMT 20241301000000 hello.txt", b"MFMT 99999999999999 hello.txt", b"ALLO 10", b"QUIT"),
    "names_utf8_nul_long": crlf(b"USER anonymous", b"PASS x", b"CWD caf\xc3\xa9", b"MKD \xe6\x97\xa5\xe6\x9c\xac",
                                b"SIZE bad\xc3utf8", b"RETR a\x00b", b"CWD " + LONG_NAME,
                                b"MKD " + b"/".join([LONG_NAME] * 3), b"SIZE  lead space", b"HELP", b"HELP RETR",
                                b"HELP NOSUCH", b"QUIT"),
}

# Session: byte 0 is the flags (fuzz_targets/session.rs `Flags`).
SESSION = {
    "curl_list": (0x00, DIALOGUES["curl_list"]),
    "curl_retr_size": (0x00, DIALOGUES["curl_retr_size"]),
    "curl_upload_resume_anon_write": (0x02, DIALOGUES["curl_upload_resume"]),
    "lftp_mlsd": (0x00, DIALOGUES["lftp_mlsd"]),
    "filezilla_anon_write": (0x02, DIALOGUES["filezilla"]),
    "winscp_anon_write": (0x02, DIALOGUES["winscp"]),
    "ftplib_anon_write": (0x02, DIALOGUES["ftplib"]),
    "wget_bare_lf": (0x00, DIALOGUES["wget_bare_lf"]),
    "user_login_write": (0x01, DIALOGUES["user_login_write"]),
    "abor_stat_during_retr": (0x00, DIALOGUES["abor_stat_during_retr"]),
    "transfer_fails_disk_full": (0x32, DIALOGUES["winscp"]),
    "pasv_fails_cant_open": (0x18, DIALOGUES["curl_retr_size"]),
    "http_alpaca": (0x00, DIALOGUES["http_alpaca"]),
    "unknown_before_login": (0x00, DIALOGUES["unknown_before_login"]),
    "jail_escape": (0x00, DIALOGUES["jail_escape"]),
    "jail_escape_anon_write": (0x02, DIALOGUES["jail_escape_write"]),
    "reply_injection_anon_write": (0x02, DIALOGUES["reply_injection"]),
    "bad_arguments": (0x00, DIALOGUES["bad_arguments"]),
    "names_utf8_nul_long": (0x02, DIALOGUES["names_utf8_nul_long"]),
    "no_anonymous_failed_logins": (0x05, crlf(*[b"USER anonymous", b"PASS x"] * 4)),
}

# Line framer: byte 0 the limit (0 = 8 KiB, n = n % 64 + 1), byte 1 the chunking seed.
FRAMER = {
    "lftp_full_limit": b"\x00\x07" + DIALOGUES["lftp_mlsd"],
    "wget_bare_lf_small_limit": b"\x3f\x03" + DIALOGUES["wget_bare_lf"],
    "telnet_ip_synch_abor": b"\x00\x01" + crlf(b"RETR big", IAC + IP + IAC + DM + b"ABOR", IAC + IP + IAC + b"ABOR",
                                               IAC + WILL + b"\x01NOOP", IAC + DO + b"\x03" + IAC + IAC + b"x",
                                               IAC, IAC + b"\r"),
    "cr_cr_lf_and_lone_cr": b"\x00\x02NOOP\r\r\nPWD\rSYST\r\n\r\n\n",
    "long_line_8k": b"\x00\x05" + b"STOR " + b"A" * 8300 + b"\r\nNOOP\r\n",
    "line_at_limit_small": b"\x09\x02" + b"ABCDEFGHIJ\r\n" + b"ABCDEFGHIJK\r\n",
    "unterminated_cr_at_limit": b"\x09\x04" + b"ABCDEFGHIJ\r",
    "http_request": b"\x00\x09" + DIALOGUES["http_alpaca"],
}

# Command parser: one line, raw bytes.
PARSER = {
    "user": b"USER anonymous",
    "noop_lower": b"noop",
    "retr_spaces": b"RETR  my file .txt ",
    "opts_utf8": b"OPTS UTF8 ON",
    "opts_http": b"OPTS * HTTP/1.1",
    "get_http": b"GET / HTTP/1.1",
    "connect_http": b"CONNECT example.com:443 HTTP/1.1",
    "mdtm_fraction": b"MDTM 20240229120000.123",
    "mfmt": b"MFMT 20240102030405 hello.txt",
    "mfmt_leap_second": b"MFMT 20161231235960 hello.txt",
    "telnet_abor": IAC + IP + IAC + DM + b"ABOR\r",
    "empty": b"",
    "nul_verb": b"\x00\x00\x00",
    "utf8_verb": b"\xc3\xa9t\xc3\xa9 x",
    "eprt": b"EPRT |2|::1|5000|",
}

# Path normaliser: cwd, LF, argument.
PATHS = {
    "sub_parent": b"sub\n../hello.txt",
    "escape_root": b"/\n../../../etc/passwd",
    "dots_and_slashes": b"a/b/c\n..//..//x/./y/",
    "backslashes": b"\n\\..\\..\\windows\\system32",
    "utf8": b"\xe6\x97\xa5\xe6\x9c\xac\ncaf\xc3\xa9/./..",
    "nul_in_arg": b"a\nb\x00c",
    "double_slash": b"//\n//",
    "triple_dots": b"a/.../b\n....",
    "long_component": b"/" + LONG_NAME + b"\n" + LONG_NAME + b"/..",
    "cr_and_ff": b"cr\rname\nff\xff/../x",
}


def write(target, entries):
    d = os.path.join(SEED, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in entries.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("session", {k: bytes([flags]) + data for k, (flags, data) in SESSION.items()})
    write("line_framer", FRAMER)
    write("command_parser", PARSER)
    write("path_normaliser", PATHS)
    n = sum(len(os.listdir(os.path.join(SEED, t))) for t in os.listdir(SEED))
    print(f"{n} seed files under {SEED}")


if __name__ == "__main__":
    main()
