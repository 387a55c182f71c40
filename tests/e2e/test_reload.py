"""Server reload (SIGHUP): parse, validate, plan, apply as one step. A token
removed from --token-file ends its sessions with the reason; a token added
works at once; a configuration that does not parse changes nothing; tunnels
of the tokens that stay keep their ports and open connections."""

import os
import signal
import time

from helpers import connect, recv_exact, wait_for


def _write(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def test_token_file_reload(mg):
    tf = os.path.join(mg.workdir, "tokens")
    tok_a, tok_b, tok_c = "alpha-" + os.urandom(6).hex(), "bravo-" + os.urandom(6).hex(), \
        "charlie-" + os.urandom(6).hex()
    _write(tf, "%s\n%s\n" % (tok_a, tok_c))
    server = mg.server(token=[], extra=["--token-file", tf])
    svc = mg.echo_service()
    a = mg.tcp_client(svc.port, server, token=tok_a, state_dir=mg.state_dir("a"))
    c = mg.tcp_client(svc.port, server, token=tok_c, state_dir=mg.state_dir("c"))
    pa = mg.wait_forward(a)[0][2]
    pc = mg.wait_forward(c)[0][2]
    held = connect(pc)  # a connection through C's tunnel, open across the reload
    held.sendall(b"before")
    assert recv_exact(held, 6) == b"before"

    # B is not accepted yet
    b = mg.tcp_client(svc.port, server, token=tok_b, state_dir=mg.state_dir("b"))
    assert b.wait(20) not in (None, 0), "an unknown token was accepted\n" + mg.logs()

    # A's token out, B's in; C stays
    _write(tf, "%s\n%s\n" % (tok_c, tok_b))
    server.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: tokens 1 added, 1 removed" in server.stderr(), 10), \
        server.stderr()[-3000:]
    assert wait_for(lambda: "token removed by a reload" in server.stderr(), 10), \
        server.stderr()[-3000:]
    # A is told why, and cannot come back
    assert wait_for(lambda: "removed from the server's configuration" in a.stderr(), 10), \
        a.stderr()
    assert a.wait(30) not in (None, 0), "agent A kept running with a removed token"
    # B works at once
    b2 = mg.tcp_client(svc.port, server, token=tok_b, state_dir=mg.state_dir("b2"))
    pb = mg.wait_forward(b2)[0][2]
    s = connect(pb)
    s.sendall(b"bee")
    assert recv_exact(s, 3) == b"bee"
    s.close()
    # C kept its port and its open connection
    held.sendall(b"after")
    assert recv_exact(held, 5) == b"after"
    held.close()
    assert len(c.forwards()) == 1 and c.alive(), mg.logs()
    s = connect(pc)
    s.sendall(b"cc")
    assert recv_exact(s, 2) == b"cc"
    s.close()


def test_bad_reload_changes_nothing(mg):
    tf = os.path.join(mg.workdir, "tokens")
    tok = "tok-" + os.urandom(6).hex()
    _write(tf, tok + "\n")
    server = mg.server(token=[], extra=["--token-file", tf])
    svc = mg.echo_service()
    a = mg.tcp_client(svc.port, server, token=tok)
    port = mg.wait_forward(a)[0][2]
    os.unlink(tf)  # the file the command line names is gone
    server.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in server.stderr(), 10), server.stderr()[-2000:]
    time.sleep(0.5)
    assert server.alive()
    s = connect(port)
    s.sendall(b"still")
    assert recv_exact(s, 5) == b"still"
    s.close()
    # a new session with the old token still authenticates
    a2 = mg.tcp_client(svc.port, server, token=tok)
    mg.wait_forward(a2)


def test_agent_sighup_keeps_tunnels_and_connections(mg):
    """An agent reloaded with the same configuration changes nothing: the
    session stays, every tunnel keeps its address and open connection."""
    server = mg.server()
    svc = mg.echo_service()
    usvc = mg.udp_service("tag")
    c = mg.locals_client(["127.0.0.1:%d" % svc.port, "udp:127.0.0.1:%d" % usvc.port], server)
    fw = mg.wait_forward(c, count=2)
    tport = [f for f in fw if f[0] == "tcp"][0][2]
    held = connect(tport)
    held.sendall(b"one")
    assert recv_exact(held, 3) == b"one"
    c.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: tunnels 0 added, 0 removed, 0 changed, 2 unchanged"
                    in c.stderr(), 10), c.stderr()
    time.sleep(0.5)
    assert c.alive()
    held.sendall(b"two")
    assert recv_exact(held, 3) == b"two"
    held.close()
    assert len(c.forwards()) == 2, c.forwards()
    assert server.stderr().count("authenticated (") == 1, "the session was dropped"
