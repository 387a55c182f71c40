"""One identity per agent (issue 11, item 12): two agents of one user both
stay up, a restarted agent (even after kill -9) gets its addresses back, and
a second copy of a running agent refuses to start instead of evicting it."""

import os
import re
import time

from helpers import echo_roundtrip, wait_for


def _echo_ok(port, msg=b"ping"):
    try:
        return echo_roundtrip(port, msg, timeout=3) == msg
    except (AssertionError, OSError):
        return False


def test_two_agents_of_one_user_both_serve(mg):
    """`mgrok tcp A` and `mgrok tcp B` with one state directory (one user)
    must not replace each other."""
    server = mg.server()
    a_svc, b_svc = mg.echo_service(), mg.echo_service()
    state = mg.state_dir("user")
    a = mg.tcp_client(a_svc.port, server, state_dir=state)
    a_port = mg.wait_forward(a)[0][2]
    b = mg.tcp_client(b_svc.port, server, state_dir=state)
    b_port = mg.wait_forward(b)[0][2]
    assert a_port != b_port
    time.sleep(5)
    assert a.alive() and b.alive(), "an agent exited:\n" + mg.logs()
    for c in (a, b):
        assert "replaced" not in c.stderr(), mg.logs()
    assert _echo_ok(a_port, b"through a") and _echo_ok(b_port, b"through b"), mg.logs()
    assert "replaced by session" not in server.stderr(), mg.logs()


def test_agent_killed_and_restarted_gets_its_port_back(mg):
    server = mg.server(extra=["--lease-grace", "30"])
    a_svc, b_svc = mg.echo_service(), mg.echo_service()
    state = mg.state_dir("user")
    a = mg.tcp_client(a_svc.port, server, state_dir=state)
    a_port = mg.wait_forward(a)[0][2]
    b = mg.tcp_client(b_svc.port, server, state_dir=state)
    b_port = mg.wait_forward(b)[0][2]
    a.kill9()
    # the lock of a dead agent is gone with it: the restart is not refused
    a2 = mg.tcp_client(a_svc.port, server, state_dir=state)
    port2 = mg.wait_forward(a2, timeout=8)[0][2]
    assert port2 == a_port, "restarted agent got port %d, expected %d\n%s" % (
        port2, a_port, mg.logs())
    assert _echo_ok(a_port, b"back") and _echo_ok(b_port, b"b still here"), mg.logs()
    assert b.alive(), mg.logs()


def test_order_of_locals_is_the_same_agent(mg):
    server = mg.server(extra=["--lease-grace", "30"])
    s1, s2 = mg.echo_service(), mg.echo_service()
    state = mg.state_dir("user")
    c1 = mg.multi_client([s1.port, s2.port], server, state_dir=state)
    fw1 = mg.wait_forward(c1, count=2)
    ports1 = {local[1]: port for _, _, port, local in fw1}
    c1.kill9()
    c2 = mg.multi_client([s2.port, s1.port], server, state_dir=state)
    fw2 = mg.wait_forward(c2, count=2, timeout=8)
    ports2 = {local[1]: port for _, _, port, local in fw2}
    assert ports1 == ports2, "the same tunnels in another order moved: %r -> %r\n%s" % (
        ports1, ports2, mg.logs())


def test_second_copy_of_an_agent_refuses_to_start(mg):
    """Documented choice (docs/usage.md): a second copy of a running agent
    (same server, same tunnels, same state directory) exits non-zero,
    naming the pid of the first, which keeps serving."""
    server = mg.server()
    svc = mg.echo_service()
    state = mg.state_dir("user")
    first = mg.tcp_client(svc.port, server, state_dir=state)
    port = mg.wait_forward(first)[0][2]
    second = mg.tcp_client(svc.port, server, state_dir=state)
    rc = second.wait(8)
    assert rc is not None and rc != 0, "second copy: rc %r\n%s" % (rc, mg.logs())
    err = second.stderr()
    assert re.search(r"mgrok: another mgrok agent with the same tunnels and server "
                     r"is running \(pid %d\)" % first.pid, err), err
    assert "--client-id" in err, err
    assert second.forwards() == []
    time.sleep(1)
    assert first.alive() and "replaced" not in first.stderr(), mg.logs()
    assert _echo_ok(port), mg.logs()
    # the agent's file says who holds it
    lock_dir = os.path.join(state, "mgrok", "agents")
    files = os.listdir(lock_dir)
    assert len(files) == 1, files
    with open(os.path.join(lock_dir, files[0])) as f:
        body = f.read()
    assert body.startswith("pid %d\n" % first.pid) and "server 127.0.0.1:" in body, body
    # once the first is gone, a copy starts and gets the port
    first.kill9()
    third = mg.tcp_client(svc.port, server, state_dir=state)
    assert mg.wait_forward(third, timeout=8)[0][2] == port, mg.logs()


def test_explicit_client_id_keeps_takeover(mg):
    """--client-id is an explicit identity: no lock; a newer session with it
    replaces the older one (PROTOCOL 4.6), even from one state directory."""
    server = mg.server()
    svc = mg.echo_service()
    state = mg.state_dir("user")
    cid = os.urandom(16).hex()
    c1 = mg.tcp_client(svc.port, server, state_dir=state, extra=["--client-id", cid])
    port = mg.wait_forward(c1)[0][2]
    c2 = mg.tcp_client(svc.port, server, state_dir=state, extra=["--client-id", cid])
    assert mg.wait_forward(c2, timeout=8)[0][2] == port
    rc = c1.wait(10)
    assert rc not in (None, 0) and "replaced" in c1.stderr(), mg.logs()
    assert wait_for(lambda: _echo_ok(port), 5), mg.logs()
